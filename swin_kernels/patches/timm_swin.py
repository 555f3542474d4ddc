"""timm's Swin blocks: SwinTransformerBlock (swin_*) and SwinTransformerV2Block (swinv2_*).

The patch replaces the block's ``_attn(x)`` (roll, pad, partition, attention, reverse, crop, roll back) and
leaves its ``forward`` (norms, drop path, MLP; pre-norm in V1, post-norm in V2) to timm. timm's semantics:

* it rolls the map *before* padding it (roll modulo H, W), then pads bottom/right: ``roll_before_pad=True``;
* windows and shifts are per axis, clamped per axis at construction (an axis not larger than the window gets
  window = its size and shift 0), fixed afterwards: the fused op takes ``block.window_size`` / ``shift_size``;
* the shift mask is laid out on the padded map, static (built for ``input_resolution`` rounded up to window
  multiples, in timm 1.0.31 for V1 and V2 alike) or, with ``dynamic_mask``, per call. The fused op always builds
  the mask of the actual map; where a static mask was built for another padded size, timm's own code runs
  (it would apply that mask as it stands, or fail), so its result stays timm's;
* V2: cosine attention with the logit scale clamped at ln 100, the continuous position bias 16·sigmoid(cpb_mlp),
  the q/k/v biases (k's a zero buffer) concatenated; applied to the unpartitioned map (hf_swinv2.cosine_qkv).

Blocks run timm's own code when the fused op cannot honour the call: attention dropout in training on a named
backend without dropout, a static mask built for another size.
"""

from __future__ import annotations

import torch

from ..geometry import WindowGeometry
from ..bias import relative_position_bias
from ..weights import window_pair
from .common import (
    AttentionSpec, ConcatenatedParameters, hooks_reason, named_backend_lacks_dropout, original, plain_linear_reason,
    window_attention_branch,
)
from .hf_swinv2 import continuous_position_bias, cosine_qkv

NAME = "timm Swin V1 and V2"
CLASS_NAMES = ("SwinTransformerBlock", "SwinTransformerV2Block")
MODULE_PREFIX = "timm.models."
REPLACES = "_attn"


def _is_v2(block) -> bool:
    return type(block).__name__ == "SwinTransformerV2Block"


def _geometry(block, height: int, width: int) -> WindowGeometry:
    return WindowGeometry(height, width, window_pair(block.window_size), window_pair(block.shift_size), True)


def _static_mask_fits(block, g: WindowGeometry) -> bool:
    """Whether the mask timm applies equals the one of this map: no shift, a dynamic mask, or a static one built
    for the same padded size."""
    if not g.shifted or getattr(block, "dynamic_mask", False):
        return True
    mask = getattr(block, "attn_mask", None)
    if mask is None:
        return False
    rows, cols = window_pair(block.input_resolution)
    static = WindowGeometry(rows, cols, g.window, g.shift, True)
    return (static.padded_height, static.padded_width) == (g.padded_height, g.padded_width)


def _dropout(block) -> float:
    return float(block.attn.attn_drop.p) if block.training else 0.0


def replacement(block, x: torch.Tensor) -> torch.Tensor:
    """The block's ``_attn``: (B, H, W, C) -> (B, H, W, C), proj and its dropout included."""
    _, height, width, _ = x.shape
    g = _geometry(block, height, width)
    spec = attention_spec(block)
    if not _static_mask_fits(block, g) or named_backend_lacks_dropout(
            block._swin_kernels_backend, x, g.window, spec.head_dim, _dropout(block)):
        return original(block, "_attn", x)
    attn = block.attn
    if _is_v2(block):
        biases = (attn.q_bias, attn.k_bias, attn.v_bias)
        qkv_bias = None if attn.q_bias is None else block._swin_kernels_qkv_bias(biases)
        bias = continuous_position_bias(attn.cpb_mlp, attn.relative_coords_table, attn.relative_position_index,
                                        attn.num_heads, g.tokens)
        out = window_attention_branch(
            x, attn.qkv.weight, qkv_bias, bias, attn.num_heads, g.window, g.shift, 1.0, _dropout(block),
            block._swin_kernels_backend, qkv_transform=lambda t: cosine_qkv(t, attn.num_heads, attn.logit_scale),
            roll_before_pad=True)
    else:
        bias = relative_position_bias(attn.relative_position_bias_table, g.window, attn.relative_position_index,
                                      table_window=g.window)
        out = window_attention_branch(
            x, attn.qkv.weight, attn.qkv.bias, bias, attn.num_heads, g.window, g.shift, float(attn.scale),
            _dropout(block), block._swin_kernels_backend, roll_before_pad=True)
    return attn.proj_drop(attn.proj(out))


def unsupported_reason(block) -> str | None:
    attn = getattr(block, "attn", None)
    needed = ("qkv", "proj", "proj_drop", "attn_drop", "num_heads")
    needed += (("logit_scale", "cpb_mlp", "relative_coords_table", "relative_position_index", "q_bias")
               if _is_v2(block) else ("relative_position_bias_table", "relative_position_index", "scale"))
    if attn is None or not all(hasattr(attn, name) for name in needed):
        return f"its attention does not have timm's {type(block).__name__} layout"
    if not all(hasattr(block, name) for name in ("window_size", "shift_size", "input_resolution")):
        return "it has no window_size / shift_size / input_resolution"
    if window_pair(attn.window_size) != window_pair(block.window_size):
        return f"its attention window {attn.window_size} differs from the block window {block.window_size}"
    return plain_linear_reason(qkv=attn.qkv, proj=attn.proj) or hooks_reason(attn=attn, qkv=attn.qkv)


def prepare(block) -> None:
    block._swin_kernels_qkv_bias = ConcatenatedParameters()  # V2: cat(q_bias, k_bias, v_bias), cached when frozen


def attention_spec(block) -> AttentionSpec:
    attn = block.attn
    heads = attn.num_heads
    return AttentionSpec(heads, attn.qkv.weight.shape[0] // (3 * heads), window_pair(block.window_size),
                         float(attn.attn_drop.p), attn.qkv.weight)
