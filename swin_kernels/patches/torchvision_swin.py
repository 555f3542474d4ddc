"""torchvision's Swin attention: ShiftedWindowAttention (swin_t/s/b) and ShiftedWindowAttentionV2 (swin_v2_*).

The patch replaces the attention module's ``forward(x)`` on the normed (B, H, W, C) map; the blocks around it
(SwinTransformerBlock, pre-norm; SwinTransformerBlockV2, post-norm) stay torchvision's. torchvision's semantics:

* it pads the map bottom/right, then rolls it (the official order);
* windows and shifts are per axis; the window is never clamped, but the shift of an axis whose window is not
  smaller than the padded size is zeroed per call (geometry.clamp_window's "shift_only" rule);
* the relative position bias is the module's own ``get_relative_position_bias()`` (V2: 16·sigmoid of the CPB
  MLP), the scale head_dim^-0.5 (V1) or V2's cosine attention with the logit scale clamped at ln 100, and V2
  zeroes the key part of the qkv bias;
* attention dropout and the output dropout follow ``self.training``, as its functional does.

torchvision's own forward reads ``qkv.weight`` and ``proj.weight`` (it never calls those modules), and so does
the patch. A module runs its own forward, with a warning, when attention dropout in training is asked of a named
backend without dropout, or when qkv or proj has no weight tensor (e.g. a dynamically quantized Linear: torchvision
then fails as it does unpatched).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..geometry import clamp_window
from ..weights import window_pair
from .common import (
    AttentionSpec, dropout_reason, linear_features, original, run_own_code_warning, tensor_weights_reason,
    window_attention_branch,
)
from .hf_swinv2 import cosine_qkv

NAME = "torchvision Swin V1 and V2"
CLASS_NAMES = ("ShiftedWindowAttention", "ShiftedWindowAttentionV2")
MODULE_PREFIX = "torchvision.models."
REPLACES = "forward"


def _is_v2(attn) -> bool:
    return hasattr(attn, "logit_scale") and hasattr(attn, "cpb_mlp")


_KEY_PART: dict[tuple, torch.Tensor] = {}  # (3C, device) -> bool mask of the key third (a constant, not a weight)


def _zero_key_bias(bias: torch.Tensor) -> torch.Tensor:
    """torchvision V2 zeroes the key part of the qkv bias on every call (one select against a kept mask)."""
    length = bias.numel() // 3
    if torch.compiler.is_compiling():  # traced once: no kept tensor in the graph's side effects
        return torch.cat([bias[:length], torch.zeros_like(bias[length:2 * length]), bias[2 * length:]])
    key = (bias.numel(), bias.device)
    mask = _KEY_PART.get(key)
    if mask is None:
        mask = torch.zeros(bias.numel(), dtype=torch.bool, device=bias.device)
        mask[length:2 * length] = True
        mask = _KEY_PART.setdefault(key, mask)
    return bias.masked_fill(mask, 0)


def replacement(attn, x: torch.Tensor) -> torch.Tensor:
    """ShiftedWindowAttention[V2].forward: (B, H, W, C) -> (B, H, W, C)."""
    _, height, width, channels = x.shape
    window, shift = clamp_window(height, width, window_pair(attn.window_size), window_pair(attn.shift_size),
                                 "shift_only")
    reason = fallback_reason(attn, x, window)
    if reason is not None:
        run_own_code_warning(attn, reason)
        return original(attn, "forward", x)
    bias = attn.get_relative_position_bias()[0]  # (heads, N, N)
    if not _is_v2(attn):
        return fused_forward(attn, x, bias, window, shift)
    qkv_bias = None if attn.qkv.bias is None else _zero_key_bias(attn.qkv.bias)
    out = window_attention_branch(
        x, attn.qkv.weight, qkv_bias, bias, attn.num_heads, window, shift, 1.0, _attention_dropout(attn),
        attn._swin_kernels_backend,
        qkv_transform=lambda t, in_place: cosine_qkv(t, attn.num_heads, attn.logit_scale, in_place))
    return _projected(attn, out)


def fused_forward(attn, x: torch.Tensor, bias: torch.Tensor, window, shift) -> torch.Tensor:
    """torchvision's V1 attention forward (2-D or 3-D) on the fused op: qkv.weight read, scaled dot-product
    attention with ``bias`` (heads, N, N) in each (shifted) window, proj.weight read, output dropout."""
    out = window_attention_branch(
        x, attn.qkv.weight, attn.qkv.bias, bias, attn.num_heads, window, shift,
        (x.shape[-1] // attn.num_heads) ** -0.5, _attention_dropout(attn), attn._swin_kernels_backend)
    return _projected(attn, out)


def _attention_dropout(attn) -> float:
    return float(attn.attention_dropout) if attn.training else 0.0


def _projected(attn, out: torch.Tensor) -> torch.Tensor:
    out = F.linear(out, attn.proj.weight, attn.proj.bias)
    return F.dropout(out, p=attn.dropout, training=attn.training)


def fallback_reason(attn, x=None, window=None, spec_of=None) -> str | None:
    """Why the patched module runs its own forward for a call on x (None: as configured), or None.
    ``spec_of``: the family's attention_spec (this module's by default)."""
    spec_of = spec_of or attention_spec
    return (tensor_weights_reason(qkv=attn.qkv, proj=attn.proj)
            or dropout_reason(attn._swin_kernels_backend, lambda: spec_of(attn), x, window, attn.training))


def unsupported_reason(attn) -> str | None:
    needed = ("qkv", "proj", "window_size", "shift_size", "num_heads", "attention_dropout", "dropout",
              "get_relative_position_bias")
    if not all(hasattr(attn, name) for name in needed):
        return f"it does not have torchvision's {type(attn).__name__} layout"
    features = linear_features(attn.qkv)
    if features[1] != 3 * features[0]:
        return "its qkv projection does not map C channels to 3C"
    return None  # its own forward reads qkv's and proj's weights (hooks on them never fire), as the patch does


def prepare(attn) -> None:
    """Nothing to keep: torchvision's qkv is one Linear already."""


def attention_spec(attn) -> AttentionSpec:
    heads = attn.num_heads
    tensor = attn.logit_scale if _is_v2(attn) else attn.relative_position_bias_table
    return AttentionSpec(heads, linear_features(attn.qkv)[1] // (3 * heads), window_pair(attn.window_size),
                         float(attn.attention_dropout), tensor)
