"""torchvision's Video Swin attention: ShiftedWindowAttention3d (swin3d_t/s/b, SwinTransformer3d).

The patch replaces the attention module's ``forward(x)`` on the normed (B, T, H, W, C) volume; the block around it
(torchvision's 2-D SwinTransformerBlock with ``attn_layer=ShiftedWindowAttention3d``) stays torchvision's.
torchvision's semantics (``_get_window_and_shift_size``, ``shifted_window_attention_3d``):

* clamping per axis against the *unpadded* volume: an axis not larger than its window takes the axis size as its
  window and shift 0 (geometry.clamp_volume_window's "per_axis" rule); the other axes keep window and shift;
* pad every axis at its far end to multiples of that window, then roll (the official order); the shift mask's
  regions on the padded volume, -100 between regions;
* the bias is the module's own ``get_relative_position_bias(window)``: for a clamped window of n tokens that is
  ``table[relative_position_index[:n, :n]]``, the first n rows and columns of the full window's index (not the
  relative positions of the clamped window in the table's centre); scale head_dim^-0.5;
* attention dropout and the output dropout follow ``self.training``, as its functional does.

torchvision's forward reads ``qkv.weight`` and ``proj.weight`` (it never calls those modules), and so does the
patch. A module runs its own forward, with a warning, when attention dropout in training is asked of a named
backend without dropout, or when qkv or proj has no weight tensor.
"""

from __future__ import annotations

import torch

from ..geometry import clamp_volume_window
from . import torchvision_swin
from .common import AttentionSpec, linear_features, original, run_own_code_warning

NAME = "torchvision Swin3D (Video Swin)"
CLASS_NAMES = ("ShiftedWindowAttention3d",)
MODULE_PREFIX = "torchvision.models."
REPLACES = "forward"


def _triple(value) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


def window_and_shift(attn, sizes) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(window, shift) torchvision uses on a volume of spatial ``sizes`` (T, H, W)."""
    return clamp_volume_window(tuple(sizes), _triple(attn.window_size), _triple(attn.shift_size), "per_axis")


def replacement(attn, x: torch.Tensor) -> torch.Tensor:
    """ShiftedWindowAttention3d.forward: (B, T, H, W, C) -> (B, T, H, W, C)."""
    if x.dim() != 5:
        return original(attn, "forward", x)  # torchvision's own error
    window, shift = window_and_shift(attn, x.shape[1:4])
    reason = fallback_reason(attn, x, window)
    if reason is not None:
        run_own_code_warning(attn, reason)
        return original(attn, "forward", x)
    bias = attn.get_relative_position_bias(list(window))[0]  # (heads, N, N): index[:N, :N]
    return torchvision_swin.fused_forward(attn, x, bias, window, shift)


def fallback_reason(attn, x=None, window=None) -> str | None:
    """Why the patched module runs its own forward for a call on x (None: as configured), or None."""
    return torchvision_swin.fallback_reason(attn, x, window, attention_spec)


def unsupported_reason(attn) -> str | None:
    needed = ("qkv", "proj", "window_size", "shift_size", "num_heads", "attention_dropout", "dropout",
              "get_relative_position_bias", "relative_position_bias_table", "relative_position_index")
    if not all(hasattr(attn, name) for name in needed):
        return f"it does not have torchvision's {type(attn).__name__} layout"
    window, shift = attn.window_size, attn.shift_size
    if len(window) != 3 or len(shift) != 3:
        return f"its window {window!r} / shift {shift!r} are not (depth, rows, columns) triples"
    if not all(0 <= s < m for s, m in zip(shift, window)):
        return f"its shift {tuple(shift)} is not within [0, window) on every axis of its window {tuple(window)}"
    features = linear_features(attn.qkv)
    if features[1] != 3 * features[0]:
        return "its qkv projection does not map C channels to 3C"
    return None  # its own forward reads qkv's and proj's weights (hooks on them never fire), as the patch does


def prepare(attn) -> None:
    """Nothing to keep: torchvision's qkv is one Linear already."""


def attention_spec(attn) -> AttentionSpec:
    heads = attn.num_heads
    return AttentionSpec(heads, linear_features(attn.qkv)[1] // (3 * heads), _triple(attn.window_size),
                         float(attn.attention_dropout), attn.relative_position_bias_table)
