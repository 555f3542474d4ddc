"""MONAI's SwinTransformerBlock (SwinUNETR, its SwinTransformer encoder) on 2-D maps and 3-D volumes.

The patch replaces ``forward_part1(x, mask_matrix)``: norm1, then the attention branch on the (B, H, W, C) map
or the (B, D, H, W, C) volume; MONAI's ``forward`` (residual, drop path, MLP, gradient checkpointing through
``self.forward_part1``) stays. Semantics, as MONAI computes them, the same on 2 and 3 axes:

* clamping per axis against the unpadded map / volume (``get_window_size``): an axis not larger than its window
  gets window = its size and shift 0 (geometry's "per_axis" rule, clamp_window / clamp_volume_window);
* pad every axis at its far end to multiples of that window, then roll (geometry's official order);
* the bias of a clamped window of n tokens (h·w, or d·h·w) is ``table[relative_position_index[:n, :n]]``: the
  first n rows and columns of the full window's (N, N) index, not the index of the clamped window in the table's
  centre. For a clamped window those are other table entries (relative positions of the full window's first n
  tokens); the dense bias is built exactly that way;
* the shift mask is the ``mask_matrix`` its BasicLayer built (regions on the padded map / volume). The fused op
  builds the mask from coordinates; the block runs MONAI's own code when the mask it is given is not that one
  (checked on every eager call against a cached copy; under torch.compile only its shape is checked).

OpenMMLab's Video Swin block (mmaction2's SwinTransformerBlock3D) has the same layout and semantics; its family
(mmaction_swin) runs this module's code.
"""

from __future__ import annotations

import torch

from ..geometry import WindowGeometry, clamp_volume_window, clamp_window
from .common import (
    given_mask_is_shift_mask,
    AttentionSpec, hooks_reason, named_backend_lacks_dropout, original, plain_linear_reason,
    window_attention_branch,
)

NAME = "MONAI SwinUNETR / SwinTransformer (2-D and 3-D)"
CLASS_NAMES = ("SwinTransformerBlock",)
MODULE_PREFIX = "monai.networks.nets.swin_unetr"
REPLACES = "forward_part1"


def _dropout(block) -> float:
    return float(block.attn.attn_drop.p) if block.training else 0.0


def _sizes(value) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def _geometry(block, *sizes: int) -> WindowGeometry:
    """The windows of a (H, W) map or a (D, H, W) volume after MONAI's get_window_size clamping."""
    window, shift = _sizes(block.window_size), _sizes(block.shift_size)
    if len(sizes) == 3:
        window, shift = clamp_volume_window(sizes, window, shift, "per_axis")
    else:
        window, shift = clamp_window(sizes[0], sizes[1], window, shift, "per_axis")
    return WindowGeometry.of(sizes, window, shift)


def clamped_bias(attn, tokens: int) -> torch.Tensor:
    """MONAI's dense (heads, n, n) bias of an n-token window: table[relative_position_index[:n, :n]]."""
    index = attn.relative_position_index[:tokens, :tokens].reshape(-1)
    return attn.relative_position_bias_table[index].reshape(tokens, tokens, -1).permute(2, 0, 1)


def _mask_fits(block, mask, g: WindowGeometry) -> bool:
    """Whether MONAI would apply the shift mask of this map (the one the fused op builds)."""
    return given_mask_is_shift_mask(block, mask, g)


def replacement(block, x: torch.Tensor, mask_matrix) -> torch.Tensor:
    """Patched forward_part1: (B, H, W, C) -> the attention branch (B, H, W, C), norm1 first, proj included; a 3-D
    block's (B, D, H, W, C) -> (B, D, H, W, C)."""
    if x.dim() != len(block.window_size) + 2:
        return original(block, "forward_part1", x, mask_matrix)
    g = _geometry(block, *x.shape[1:-1])
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
    shift = getattr(block, "shift_size", None)
    attn = getattr(block, "attn", None)
    needed = ("qkv", "proj", "proj_drop", "attn_drop", "num_heads", "scale", "relative_position_bias_table",
              "relative_position_index")
    if attn is None or not all(hasattr(attn, name) for name in needed) or not hasattr(block, "norm1"):
        return "its attention does not have MONAI's WindowAttention layout"
    if window is None or shift is None or len(window) not in (2, 3) or len(shift) != len(window):
        return f"its window {window!r} / shift {shift!r} are not 2-D pairs or 3-D triples"
    if tuple(attn.window_size) != tuple(window):
        return f"its attention window {tuple(attn.window_size)} differs from the block window {tuple(window)}"
    if not all(0 <= s < m for s, m in zip(shift, window)):
        return f"its shift {tuple(shift)} is not within [0, window) on every axis of its window {tuple(window)}"
    if attn.qkv.out_features != 3 * attn.qkv.in_features:
        return "its qkv does not project to 3 x its channels"
    return plain_linear_reason(qkv=attn.qkv, proj=attn.proj) or hooks_reason(attn=attn, qkv=attn.qkv)


def prepare(block) -> None:
    block._swin_kernels_masks = {}  # (sizes, window, dtype, device) -> the shift mask the fused op applies


def attention_spec(block) -> AttentionSpec:
    attn = block.attn
    heads = attn.num_heads
    return AttentionSpec(heads, attn.qkv.weight.shape[0] // (3 * heads), _sizes(block.window_size),
                         float(attn.attn_drop.p), attn.qkv.weight)
