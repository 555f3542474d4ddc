"""The implementations a Swin user would otherwise pick, written the way their projects write them.

* sdpa: windows partitioned first, then ``F.scaled_dot_product_attention`` with the relative bias plus the
  shift mask expanded to a dense (B·nW, heads, N, N) ``attn_mask`` (timm's fused path, HF's ``sdpa``).
* flex: the same windows through ``flex_attention`` (compiled), the bias as a ``score_mod`` and the shift
  mask as a ``BlockMask`` from a ``mask_mod`` on region ids. A mask_mod removes entries outright where the
  official mask adds -100; the two differ by exp(-100) relative, far below fp32 resolution.
* HF: transformers' ``SwinLayer`` with its own pad, roll, partition, mask and ``SwinAttention`` — its attention
  branch only (no layer norms, MLP or residuals), exactly as ``SwinLayer.forward`` sequences those calls.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from swin_kernels import reference as ref
from swin_kernels.geometry import WindowGeometry

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # q, k, v, bias -> out


# ------------------------------------------------------------------------------------------ window plumbing
def core_through(attend: Attend, g: WindowGeometry, num_heads: int) -> Callable:
    """(qkv map, pad_qkv, bias) -> (B, H, W, C) with ``attend`` on the windows: pad, roll, partition, reverse."""

    def core(qkv: torch.Tensor, pad_qkv: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        windows = ref.partition_windows(ref.pad_and_roll(qkv, g, pad_qkv), g.window)
        out = ref.merge_heads(attend(*ref.split_heads(windows, num_heads), bias))
        return ref.unroll_and_crop(ref.merge_windows(out, g.window, g.padded_height, g.padded_width), g)

    return core


def branch_through(attend: Attend, g: WindowGeometry, attn: nn.Module) -> Callable:
    """x -> branch output in the official/timm order: partition x, qkv Linear per window, attend, proj, reverse."""

    def branch(x: torch.Tensor) -> torch.Tensor:
        windows = ref.window_partition(x, g.window, g.shift)
        q, k, v = ref.split_heads(attn.qkv(windows), attn.num_heads)
        bias = ref.relative_position_bias(attn.relative_position_bias_table, g.window)
        out = attn.proj(ref.merge_heads(attend(q, k, v, bias)))
        return ref.window_reverse(out, g.window, g.height, g.width, g.shift)

    return branch


# ---------------------------------------------------------------------------------------------------- sdpa
def sdpa_attend(g: WindowGeometry, scale: float, dtype: torch.dtype, device: torch.device) -> Attend:
    mask = ref.shift_attention_mask(g, dtype=dtype, device=device)  # built once, as the official buffer is

    def attend(q, k, v, bias):
        attn_mask = bias.unsqueeze(0)
        if mask is not None:
            n_win, n = mask.shape[0], mask.shape[-1]
            heads = q.shape[1]
            expanded = mask.view(1, n_win, 1, n, n).expand(q.shape[0] // n_win, n_win, heads, n, n)
            attn_mask = attn_mask + expanded.reshape(-1, heads, n, n)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)

    return attend


# ---------------------------------------------------------------------------------------------------- flex
@lru_cache(maxsize=None)
def compiled_flex_attention():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def flex_attend(g: WindowGeometry, batch: int, scale: float, device: torch.device) -> Attend:
    from torch.nn.attention.flex_attention import create_block_mask

    block_mask = None
    if g.shifted:
        ids = ref.shift_region_ids(g, device)[None, :, :, None]
        region = ref.partition_windows(ids, g.window).squeeze(-1)  # (nW, N) region id of each token
        n_win = region.shape[0]

        def same_region(b, h, q_idx, kv_idx):
            window = b % n_win
            return region[window, q_idx] == region[window, kv_idx]

        block_mask = create_block_mask(same_region, batch * n_win, None, g.tokens, g.tokens, device=device)
    flex = compiled_flex_attention()

    def attend(q, k, v, bias):
        def add_bias(score, b, h, q_idx, kv_idx):
            return score + bias[h, q_idx, kv_idx]

        return flex(q, k, v, score_mod=add_bias, block_mask=block_mask, scale=scale)

    return attend


# ------------------------------------------------------------------------------------------------------ HF
def hf_swin_layer(attn: nn.Module, g: WindowGeometry, implementation: str) -> nn.Module:
    """A transformers SwinLayer holding ``attn``'s weights (q/k/v split from the fused qkv)."""
    from transformers import SwinConfig
    from transformers.models.swin.modeling_swin import SwinLayer

    c = attn.dim
    config = SwinConfig(embed_dim=c, depths=[2], num_heads=[attn.num_heads], window_size=g.window[0],
                        qkv_bias=attn.qkv.bias is not None, attn_implementation=implementation)
    layer = SwinLayer(config, dim=c, input_resolution=(g.height, g.width), num_heads=attn.num_heads,
                      shift_size=g.shift[0])
    layer = layer.to(device=attn.qkv.weight.device, dtype=attn.qkv.weight.dtype).eval()
    hf = layer.attention
    with torch.no_grad():
        for i, linear in enumerate((hf.q_proj, hf.k_proj, hf.v_proj)):
            linear.weight.copy_(attn.qkv.weight[i * c:(i + 1) * c])
            if linear.bias is not None:
                linear.bias.copy_(attn.qkv.bias[i * c:(i + 1) * c])
        hf.o_proj.weight.copy_(attn.proj.weight)
        hf.o_proj.bias.copy_(attn.proj.bias)
        hf.relative_position_bias.relative_position_bias_table.copy_(attn.relative_position_bias_table)
    return layer


def hf_attention_branch(layer: nn.Module) -> Callable:
    """The attention half of ``SwinLayer.forward`` on an already normed (B, H, W, C) map, with its own methods."""
    from transformers.models.swin.modeling_swin import window_partition, window_reverse

    def branch(x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        layer.set_shift_and_window_size((height, width))
        window = layer.window_size
        padded, pad_values = layer.maybe_pad(x, height, width)
        _, height_pad, width_pad, _ = padded.shape
        windows = window_partition(layer.cyclic_shift(padded), window).view(-1, window * window, channels)
        mask = layer.get_attn_mask(height_pad, width_pad, dtype=x.dtype, device=x.device)
        out, _ = layer.attention(windows, mask)
        out = out.view(-1, window, window, channels)
        out = layer.cyclic_shift(window_reverse(out, window, height_pad, width_pad), reverse=True)
        if pad_values[3] > 0 or pad_values[5] > 0:
            out = out[:, :height, :width, :].contiguous()
        return out

    return branch
