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

``qkv`` is called as timm calls it (V1, V2 without q/v biases or with ``qkv_bias_separate``), so wrappers and
quantized Linears put on it after ``patch()`` run; V2 with q/v biases reads ``qkv.weight`` as timm does. Blocks run
timm's own code, with a warning, when the fused op cannot honour the call: hooks on ``attn`` (or a module under it
the fused path does not call), attention dropout in training on a named backend without dropout, a static mask
built for another size, a V2 ``qkv`` without a weight tensor.
"""

from __future__ import annotations

import torch

from ..geometry import WindowGeometry
from ..bias import relative_position_bias
from ..weights import window_pair
from .common import (
    AttentionSpec, attend, bypassed_hooks_reason, dropout_reason, is_plain_linear, linear_features, original,
    project, run_own_code_warning, tensor_weights_reason,
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


def _reads_qkv_weight(attn) -> bool:
    """timm V2 with q/v biases reads ``qkv.weight`` (F.linear with the concatenated biases); otherwise it calls qkv."""
    return attn.q_bias is not None and not getattr(attn, "qkv_bias_separate", False)


def _called_modules(block):
    """Every module under ``attn`` the fused path calls (timm calls them too)."""
    attn = block.attn
    called = (attn.proj, attn.proj_drop) + ((attn.cpb_mlp,) if _is_v2(block) else ())
    return called if _is_v2(block) and _reads_qkv_weight(attn) else called + (attn.qkv,)


def fallback_reason(block, x=None) -> str | None:
    """Why the patched block runs timm's own ``_attn`` for a call on x (None: as configured), or None."""
    attn = block.attn
    if x is None:
        window = window_pair(block.window_size)
    else:
        g = _geometry(block, x.shape[1], x.shape[2])
        if not _static_mask_fits(block, g):
            return (f"its static shift mask was built for {window_pair(block.input_resolution)}, not this "
                    f"{g.height}x{g.width} map")
        window = g.window
    weights = tensor_weights_reason(qkv=attn.qkv) if _is_v2(block) and _reads_qkv_weight(attn) else None
    return (weights or bypassed_hooks_reason(attn, "attn", _called_modules(block))
            or dropout_reason(block._swin_kernels_backend, lambda: attention_spec(block), x, window, block.training))


def replacement(block, x: torch.Tensor) -> torch.Tensor:
    """The block's ``_attn``: (B, H, W, C) -> (B, H, W, C), proj and its dropout included."""
    _, height, width, _ = x.shape
    reason = fallback_reason(block, x)
    if reason is not None:
        run_own_code_warning(block, reason)
        return original(block, "_attn", x)
    g = _geometry(block, height, width)
    attn = block.attn
    if _is_v2(block):
        owned = True  # a fresh F.linear output or sum, or a module's output (only when it is a plain Linear)
        if attn.q_bias is None:
            qkv, pad_qkv = project(x, (attn.qkv,), g)
            owned = is_plain_linear(attn.qkv)
        else:
            qkv_bias = torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
            if _reads_qkv_weight(attn):
                qkv = torch.nn.functional.linear(x, attn.qkv.weight, qkv_bias)
                pad_qkv = qkv_bias.to(qkv.dtype)
            else:  # qkv_bias_separate: qkv(x) + bias
                qkv, pad_qkv = project(x, (attn.qkv,), g)
                qkv = qkv + qkv_bias
                pad_qkv = qkv_bias.to(qkv.dtype) if pad_qkv is None else pad_qkv + qkv_bias
        bias = continuous_position_bias(attn.cpb_mlp, attn.relative_coords_table, attn.relative_position_index,
                                        attn.num_heads, g.tokens)
        out = attend(qkv, pad_qkv, bias, attn.num_heads, g, 1.0, _dropout(block),
                     block._swin_kernels_backend,
                     qkv_transform=lambda t, in_place: cosine_qkv(t, attn.num_heads, attn.logit_scale, in_place),
                     owned_qkv=owned)
    else:
        qkv, pad_qkv = project(x, (attn.qkv,), g)
        bias = relative_position_bias(attn.relative_position_bias_table, g.window, attn.relative_position_index,
                                      table_window=g.window)
        out = attend(qkv, pad_qkv, bias, attn.num_heads, g, float(attn.scale), _dropout(block),
                     block._swin_kernels_backend)
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
    return bypassed_hooks_reason(attn, "attn", _called_modules(block))


def prepare(block) -> None:
    """Nothing to keep: everything is read or called per call."""


def attention_spec(block) -> AttentionSpec:
    attn = block.attn
    heads = attn.num_heads
    tensor = attn.logit_scale if _is_v2(block) else attn.relative_position_bias_table
    return AttentionSpec(heads, linear_features(attn.qkv)[1] // (3 * heads), window_pair(block.window_size),
                         float(attn.attn_drop.p), tensor)
