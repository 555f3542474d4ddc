"""MONAI's SwinTransformerBlock (SwinUNETR, its SwinTransformer encoder) on 2-D maps (spatial_dims=2).

The patch replaces ``forward_part1(x, mask_matrix)``: norm1, then the attention branch on the (B, H, W, C) map;
MONAI's ``forward`` (residual, drop path, MLP, gradient checkpointing through ``self.forward_part1``) stays.
Semantics, as MONAI computes them:

* clamping per axis against the unpadded map (``get_window_size``): an axis not larger than the window gets
  window = its size and shift 0 (geometry's "per_axis" rule);
* pad bottom/right to multiples of that window, then roll (geometry's official order);
* the bias of a clamped window of n = h·w tokens is ``table[relative_position_index[:n, :n]]``: the first n rows
  and columns of the full window's (N, N) index, not the index of an h x w window in the table's centre. For a
  clamped window those are other table entries (relative positions of the full window's first n tokens); the
  dense bias is built exactly that way;
* the shift mask is the ``mask_matrix`` its BasicLayer built (regions on the padded map). The fused op builds the
  mask from coordinates; the block runs MONAI's own code when the mask it is given is not that one (checked on
  every eager call against a cached copy; under torch.compile only its shape is checked).

3-D blocks (spatial_dims=3) are declined with the reason "3-D windows are not supported yet".
"""

from __future__ import annotations

import torch

from ..geometry import WindowGeometry, clamp_window
from .common import (
    given_mask_is_shift_mask,
    AttentionSpec, hooks_reason, named_backend_lacks_dropout, original, plain_linear_reason,
    window_attention_branch,
)

NAME = "MONAI SwinUNETR / SwinTransformer (2-D)"
CLASS_NAMES = ("SwinTransformerBlock",)
MODULE_PREFIX = "monai.networks.nets.swin_unetr"
REPLACES = "forward_part1"
THREE_D_REASON = "3-D windows are not supported yet"


def _dropout(block) -> float:
    return float(block.attn.attn_drop.p) if block.training else 0.0


def _geometry(block, height: int, width: int) -> WindowGeometry:
    window, shift = clamp_window(height, width, tuple(block.window_size), tuple(block.shift_size), "per_axis")
    return WindowGeometry(height, width, window, shift)


def clamped_bias(attn, tokens: int) -> torch.Tensor:
    """MONAI's dense (heads, n, n) bias of an n-token window: table[relative_position_index[:n, :n]]."""
    index = attn.relative_position_index[:tokens, :tokens].reshape(-1)
    return attn.relative_position_bias_table[index].reshape(tokens, tokens, -1).permute(2, 0, 1)


def _mask_fits(block, mask, g: WindowGeometry) -> bool:
    """Whether MONAI would apply the shift mask of this map (the one the fused op builds)."""
    return given_mask_is_shift_mask(block, mask, g)


def replacement(block, x: torch.Tensor, mask_matrix) -> torch.Tensor:
    """Patched forward_part1: (B, H, W, C) -> the attention branch (B, H, W, C), norm1 first, proj included."""
    if x.dim() != 4:
        return original(block, "forward_part1", x, mask_matrix)
    _, height, width, _ = x.shape
    g = _geometry(block, height, width)
    spec = attention_spec(block)
    if not _mask_fits(block, mask_matrix, g) or named_backend_lacks_dropout(
            block._swin_kernels_backend, x, g.window, spec.head_dim, _dropout(block)):
        return original(block, "forward_part1", x, mask_matrix)
    attn = block.attn
    out = window_attention_branch(
        block.norm1(x), attn.qkv.weight, attn.qkv.bias, clamped_bias(attn, g.tokens), attn.num_heads, g.window,
        g.shift, float(attn.scale), _dropout(block), block._swin_kernels_backend)
    return attn.proj_drop(attn.proj(out))


def unsupported_reason(block) -> str | None:
    window = getattr(block, "window_size", None)
    if window is not None and len(window) == 3:
        return THREE_D_REASON
    attn = getattr(block, "attn", None)
    needed = ("qkv", "proj", "proj_drop", "attn_drop", "num_heads", "scale", "relative_position_bias_table",
              "relative_position_index")
    if attn is None or not all(hasattr(attn, name) for name in needed) or not hasattr(block, "norm1"):
        return "its attention does not have MONAI's WindowAttention layout"
    if window is None or len(window) != 2 or len(block.shift_size) != 2:
        return f"its window {window!r} / shift {getattr(block, 'shift_size', None)!r} are not 2-D pairs"
    if tuple(attn.window_size) != tuple(window):
        return f"its attention window {tuple(attn.window_size)} differs from the block window {tuple(window)}"
    if attn.qkv.out_features != 3 * attn.qkv.in_features:
        return "its qkv does not project to 3 x its channels"
    return plain_linear_reason(qkv=attn.qkv, proj=attn.proj) or hooks_reason(attn=attn, qkv=attn.qkv)


def prepare(block) -> None:
    block._swin_kernels_masks = {}  # (H, W, dtype, device) -> the shift mask the fused op applies


def attention_spec(block) -> AttentionSpec:
    attn = block.attn
    heads = attn.num_heads
    return AttentionSpec(heads, attn.qkv.weight.shape[0] // (3 * heads), tuple(int(m) for m in block.window_size),
                         float(attn.attn_drop.p), attn.qkv.weight)
