"""OpenMMLab's ShiftWindowMSA (mmpretrain V1 and V2, mmdet, mmseg): the attention module that owns the windows.

In the OpenMMLab code the block (SwinBlock / SwinBlockV2) holds ``attn`` = ``ShiftWindowMSA``, which holds
``window_size`` / ``shift_size`` (ints) and the window attention ``w_msa`` (``WindowMSA``: qkv, proj, a relative
position bias table; or mmpretrain's ``WindowMSAV2``: cosine attention). The patch replaces
``ShiftWindowMSA.forward(query, hw_shape)`` ((B, L, C) -> (B, L, C), its DropPath ``drop`` included). Semantics:

* pad bottom/right to window multiples, then roll (geometry's official order); the shift mask on the padded map;
* mmdet and mmseg never clamp: the window and the shift stay as built, whatever the map (clamp rule "none");
* mmpretrain (``pad_small_map`` on the module): a map whose smaller side equals the window drops the shift on both
  axes unless ``pad_small_map``; a smaller side below the window is an error there unless ``pad_small_map``, in
  which case nothing is clamped (its own code runs and raises that error);
* V1: scores q·kᵀ·scale + table[relative_position_index] (the module's own index buffer);
* V2 (mmpretrain WindowMSAV2): cos(q, k)·exp(min(logit_scale, ln 100)) + 16·sigmoid(cpb_mlp(coords))[index], the
  qkv bias cat(q_bias, 0, v_bias), applied to the unpartitioned map (hf_swinv2.cosine_qkv).

Only the three libraries' classes are recognised (a copy elsewhere may differ in its clamping): other modules of
that structure are reported by ``unpatched_lookalikes`` instead of being patched with another library's rules.
"""

from __future__ import annotations

import torch

from ..geometry import WindowGeometry
from .common import (
    AttentionSpec, ConcatenatedParameters, hooks_reason, named_backend_lacks_dropout, original, plain_linear_reason,
    window_attention_branch,
)
from .hf_swinv2 import continuous_position_bias, cosine_qkv

NAME = "OpenMMLab ShiftWindowMSA (mmpretrain V1/V2, mmdet, mmseg)"
CLASS_NAMES = ("ShiftWindowMSA",)
MODULE_PREFIXES = ("mmpretrain.", "mmdet.", "mmseg.", "mmcls.")
MODULE_PREFIX = MODULE_PREFIXES[0]
REPLACES = "forward"


def matches(module) -> bool:
    cls = type(module)
    return cls.__name__ in CLASS_NAMES and cls.__module__.startswith(MODULE_PREFIXES)


def _is_v2(attn) -> bool:
    return hasattr(attn, "cpb_mlp") and hasattr(attn, "logit_scale")


def _window_shift(module, height: int, width: int):
    """(window, shift) this module uses on the map, or None where the library's own code must run (it raises)."""
    window, shift = int(module.window_size), int(module.shift_size)
    if not hasattr(module, "pad_small_map"):  # mmdet / mmseg: never clamped
        return window, shift
    if min(height, width) == window and not module.pad_small_map:
        shift = 0
    elif min(height, width) < window and not module.pad_small_map:
        return None
    return window, shift


def _dropout(module) -> float:
    return float(module.w_msa.attn_drop.p) if module.training else 0.0


def replacement(module, query: torch.Tensor, hw_shape) -> torch.Tensor:
    """Patched ShiftWindowMSA.forward: (B, H·W, C) -> (B, H·W, C)."""
    batch, length, channels = query.shape
    height, width = hw_shape
    sizes = _window_shift(module, height, width)
    spec = attention_spec(module)
    if (length != height * width or sizes is None or named_backend_lacks_dropout(
            module._swin_kernels_backend, query, spec.window, spec.head_dim, _dropout(module))):
        return original(module, "forward", query, hw_shape)
    window, shift = sizes
    g = WindowGeometry(height, width, (window, window), (shift, shift))
    x = query.view(batch, height, width, channels)
    attn = module.w_msa
    if _is_v2(attn):
        qkv_bias = None if attn.q_bias is None else module._swin_kernels_qkv_bias((attn.q_bias, None, attn.v_bias))
        bias = continuous_position_bias(attn.cpb_mlp, attn.relative_coords_table, attn.relative_position_index,
                                        attn.num_heads, g.tokens)
        out = window_attention_branch(
            x, attn.qkv.weight, qkv_bias, bias, attn.num_heads, g.window, g.shift, 1.0, _dropout(module),
            module._swin_kernels_backend,
            qkv_transform=lambda t, in_place: cosine_qkv(t, attn.num_heads, attn.logit_scale, in_place))
    else:
        n = g.tokens
        bias = attn.relative_position_bias_table[attn.relative_position_index.reshape(-1)].reshape(n, n, -1)
        out = window_attention_branch(
            x, attn.qkv.weight, attn.qkv.bias, bias.permute(2, 0, 1), attn.num_heads, g.window, g.shift,
            float(attn.scale), _dropout(module), module._swin_kernels_backend)
    out = attn.proj_drop(attn.proj(out))
    return module.drop(out.reshape(batch, length, -1))


def unsupported_reason(module) -> str | None:
    attn = getattr(module, "w_msa", None)
    if attn is None or not all(hasattr(module, name) for name in ("window_size", "shift_size", "drop")):
        return "it has no w_msa / window_size / shift_size / drop"
    needed = ("qkv", "proj", "proj_drop", "attn_drop", "num_heads", "relative_position_index")
    needed += (("cpb_mlp", "logit_scale", "relative_coords_table", "q_bias", "v_bias") if _is_v2(attn)
               else ("relative_position_bias_table", "scale"))
    if not all(hasattr(attn, name) for name in needed):
        return f"its w_msa ({type(attn).__name__}) has neither WindowMSA's nor WindowMSAV2's layout"
    if not isinstance(module.window_size, int) or tuple(attn.window_size) != (module.window_size,) * 2:
        return f"its window {module.window_size!r} is not the square window {tuple(attn.window_size)} of w_msa"
    if attn.qkv.out_features != 3 * attn.qkv.in_features:
        return "its qkv does not project to 3 x its channels"
    return plain_linear_reason(qkv=attn.qkv, proj=attn.proj) or hooks_reason(w_msa=attn, qkv=attn.qkv)


def prepare(module) -> None:
    module._swin_kernels_qkv_bias = ConcatenatedParameters()  # V2: cat(q_bias, 0, v_bias), cached when frozen


def attention_spec(module) -> AttentionSpec:
    attn = module.w_msa
    heads = attn.num_heads
    return AttentionSpec(heads, attn.qkv.weight.shape[0] // (3 * heads), (int(module.window_size),) * 2,
                         float(attn.attn_drop.p), attn.qkv.weight)
