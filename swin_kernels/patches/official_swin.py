"""The official Swin block layout and the code copied from it, matched by structure rather than by class name.

The official code's ``SwinTransformerBlock`` (``attn`` = ``WindowAttention`` with ``qkv``, ``proj``,
``relative_position_bias_table``, ``relative_position_index``, ``scale``; ``window_size`` / ``shift_size`` on the
block, ints) was copied into many packages under many module names. A block of that structure is recognised
(``matches``), and patched when its forward is one of these layouts (told apart by its parameter names):

* ``forward(x, x_size)``: SwinIR, DRCT (V1 attention, pre-norm) and Swin2SR (Swin V2 attention, post-norm: the
  attention and MLP outputs are normed before the residual). The map size comes per call; the model pads the
  image to window multiples, so the block never pads (a map that is not a multiple runs the block's own code).
  Window and shift are fixed at construction, where the official rule already clamped them against
  ``input_resolution`` (a map whose smaller side is not larger than the window is one unshifted window); at run
  time nothing is clamped. The shift mask is the block's ``attn_mask`` buffer or ``calculate_mask(x_size)``.
* ``forward(x, x_size, rpi_sa, attn_mask)``: HAT's hybrid attention block (HAB), a channel-attention conv branch
  beside the window attention; the model hands every block the relative position index and the shift mask.
  The fused path gathers the bias through the ``rpi_sa`` it is given.
* ``forward(x)``: the classification code (the official repository, laion_clap's HTSAT audio encoder): the map
  size is the block's ``input_resolution``, fixed at construction, where the official rule clamped window and shift
  (a map whose smaller side is not larger than the window is one unshifted window); the block never pads and its
  shift mask is its ``attn_mask`` buffer. HTSAT's block (it has ``norm_before_mlp``: a LayerNorm, or a BatchNorm it
  builds per call, before the MLP) also returns its attention probabilities, which its layer averages in eval mode
  and its model never reads: the patched block returns an empty tensor in their place (the fused kernel never forms
  the probabilities; unpatch to look at attention maps).
* ``forward(x, mask_matrix)``: the detection/segmentation copy (the official object-detection code, GroundingDINO,
  Mask2Former, ...): ``H``/``W`` set on the block by its layer, the normed map padded bottom/right to window
  multiples and then rolled (padded tokens are zero vectors before ``qkv``, so they see its bias), never clamped.

Semantics of the fused op: pad, then roll (geometry's official order), the mask built from coordinates. Where the
block receives a mask (its buffer, HAB's and the detection layer's argument), the fused path runs only when that
mask is the one of the map — checked on every eager call (a comparison of nW·N² values, cached expected mask), its
shape only under torch.compile — and otherwise runs the block's own code. V2 attention (Swin2SR): cosine scores
times exp(min(logit_scale, ln 100)), 16·sigmoid of the CPB MLP as bias, q and v biases with a zero k bias.

Declined with a reason (``unsupported_reason``): other forwards, attention modules with another forward, and blocks or attention modules with parameters or submodules beyond the official ones (a layer scale, an
extra branch), whose results the fused path would not reproduce.
"""

from __future__ import annotations

import inspect
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ..bias import relative_position_bias
from ..geometry import WindowGeometry
from ..weights import window_pair
from .common import (
    given_mask_is_shift_mask,
    AttentionSpec, attend, bypassed_hooks_reason, cat_filled, dropout_reason, linear_features, original, project,
    run_own_code_warning, tensor_weights_reason,
)
from .hf_swinv2 import continuous_position_bias, cosine_qkv

NAME = ("official Swin block layout (the classification and detection code and their copies, SwinIR, Swin2SR, HAT, "
        "DRCT, laion_clap's HTSAT)")
CLASS_NAMES = ()  # matched by structure (matches), whatever the class is called
MODULE_PREFIX = ""
REPLACES = "forward"

# Libraries with families of their own (their blocks never reach this one).
_OTHER_FAMILIES = ("timm.", "torchvision.", "transformers.", "mmdet.", "mmseg.", "mmpretrain.", "mmcls.", "monai.")

_LAYOUTS = {
    ("x",): "classification",
    ("x", "x_size"): "restoration",
    ("x", "x_size", "rpi_sa", "attn_mask"): "hab",
    ("x", "mask_matrix"): "detection",
}
_ATTENTION_FORWARDS = {"classification": ("x", "mask"), "restoration": ("x", "mask"), "detection": ("x", "mask"),
                       "hab": ("x", "rpi", "mask")}
_BLOCK_CHILDREN = {"norm1", "attn", "drop_path", "norm2", "mlp"}
_V1_ATTENTION = ({"qkv", "attn_drop", "proj", "proj_drop", "softmax"}, {"relative_position_bias_table"},
                 {"relative_position_index"})
_V2_ATTENTION = ({"qkv", "attn_drop", "proj", "proj_drop", "softmax", "cpb_mlp"}, {"logit_scale", "q_bias", "v_bias"},
                 {"relative_position_index", "relative_coords_table"})


def matches(module: nn.Module) -> bool:
    """A block with the official structure: ``attn`` holding ``qkv`` and a relative position bias table (or V2's
    CPB MLP), ``window_size`` and ``shift_size`` on the block."""
    attn = module._modules.get("attn") if isinstance(module, nn.Module) else None
    if attn is None or not hasattr(attn, "qkv") or not hasattr(module, "window_size") or not hasattr(
            module, "shift_size"):
        return False
    if not (hasattr(attn, "relative_position_bias_table") or hasattr(attn, "cpb_mlp")):
        return False
    return not type(module).__module__.startswith(_OTHER_FAMILIES)


@lru_cache(maxsize=None)
def _parameter_names(function) -> tuple[str, ...]:
    parameters = list(inspect.signature(function).parameters.values())[1:]  # after self
    return tuple(p.name for p in parameters)


def _layout(block) -> str | None:
    return _LAYOUTS.get(_parameter_names(type(block).forward))


def _is_v2(attn) -> bool:
    return hasattr(attn, "logit_scale") and hasattr(attn, "cpb_mlp")


# ---------------------------------------------------------------------------------------------- patch checks
def _extra_members(module: nn.Module, children, parameters, buffers) -> str | None:
    """The first submodule, parameter or buffer of ``module`` beyond the allowed names."""
    for kind, present, allowed in (("submodule", module._modules, children),
                                   ("parameter", module._parameters, parameters),
                                   ("buffer", module._buffers, buffers)):
        extra = sorted(name for name, value in present.items() if value is not None and name not in allowed)
        if extra:
            return f"{kind} {extra[0]!r}"
    return None


def unsupported_reason(block) -> str | None:
    """Why this block cannot take the fused path (None when it can)."""
    names = _parameter_names(type(block).forward)
    layout = _LAYOUTS.get(names)
    if layout is None:
        return f"its forward{tuple(names)} is not one of the official layouts this version knows"
    if layout == "classification":
        resolution = getattr(block, "input_resolution", None)
        if not isinstance(resolution, (tuple, list)) or len(resolution) != 2:
            return f"its forward(x) reads input_resolution, which is {resolution!r}, not (H, W)"
        if getattr(block, "norm_before_mlp", "ln") not in ("ln", "bn"):
            return f"its norm_before_mlp {block.norm_before_mlp!r} is not 'ln' or 'bn'"
    attn = block.attn
    attention_names = _parameter_names(type(attn).forward)
    if attention_names != _ATTENTION_FORWARDS[layout]:
        return f"its attention's forward{attention_names} is not the official WindowAttention's"
    children = _BLOCK_CHILDREN | ({"conv_block"} if layout == "hab" else set())
    extra = _extra_members(block, children, set(), {"attn_mask"})
    if extra is not None:
        return f"it has a {extra} the official block does not have"
    extra = _extra_members(attn, *(_V2_ATTENTION if _is_v2(attn) else _V1_ATTENTION))
    if extra is not None:
        return f"its attention has a {extra} the official WindowAttention does not have"
    if layout != "hab" and "relative_position_index" not in attn._buffers:
        return "its attention has no relative_position_index"
    window, shift = block.window_size, block.shift_size
    if not isinstance(window, int) or not isinstance(shift, int) or not 0 <= shift < window:
        return f"its window_size {window!r} / shift_size {shift!r} are not ints with 0 <= shift < window"
    if window_pair(attn.window_size) != (window, window):
        return f"its attention window {tuple(attn.window_size)} differs from the block window {window}"
    if not isinstance(attn.attn_drop, nn.Dropout) or not isinstance(attn.softmax, nn.Softmax) or attn.softmax.dim != -1:
        return "its attention's attn_drop / softmax are not nn.Dropout / nn.Softmax(dim=-1)"
    if linear_features(attn.qkv)[1] != 3 * linear_features(attn.qkv)[0] or linear_features(attn.qkv)[0] % attn.num_heads:
        return "its qkv projection does not map C channels to 3C"
    return bypassed_hooks_reason(attn, "attn", _called_modules(block))


def _called_modules(block):
    """The modules under ``attn`` the fused path calls, as the block's own code does (V2 reads qkv.weight)."""
    attn = block.attn
    return (attn.proj, attn.proj_drop) + ((attn.cpb_mlp,) if _is_v2(attn) else (attn.qkv,))


def fallback_reason(block, x=None) -> str | None:
    """Why the patched block runs its own code (None: as configured, or for a call on x)."""
    attn = block.attn
    weights = tensor_weights_reason(qkv=attn.qkv) if _is_v2(attn) else None
    return (weights or bypassed_hooks_reason(attn, "attn", _called_modules(block))
            or dropout_reason(block._swin_kernels_backend, lambda: attention_spec(block), x, (block.window_size,) * 2,
                              block.training))


def prepare(block) -> None:
    block._swin_kernels_layout = _layout(block)
    block._swin_kernels_masks = {}  # (H, W, dtype, device) -> the shift mask the fused op applies


def attention_spec(block) -> AttentionSpec:
    attn = block.attn
    heads = attn.num_heads
    tensor = attn.logit_scale if _is_v2(attn) else attn.relative_position_bias_table
    return AttentionSpec(heads, linear_features(attn.qkv)[1] // (3 * heads), window_pair(block.window_size),
                         float(attn.attn_drop.p), tensor)


# ------------------------------------------------------------------------------------------------ the forward
def _geometry(block, height: int, width: int) -> WindowGeometry:
    return WindowGeometry(height, width, (block.window_size,) * 2, (block.shift_size,) * 2)


def _mask_fits(block, mask, g: WindowGeometry) -> bool:
    """Whether the shift mask the block would apply equals the one the fused op builds for this map."""
    return given_mask_is_shift_mask(block, mask, g)


def _own_code(block, reason: str, *args):
    """Run the block's own forward for this call, saying why once per class and reason."""
    run_own_code_warning(block, reason)
    return original(block, "forward", *args)


def _attention(block, x: torch.Tensor, g: WindowGeometry, index=None) -> torch.Tensor:
    """The attention branch on the normed map x (B, H, W, C): fused window attention, proj and its dropout."""
    attn = block.attn
    heads = attn.num_heads
    dropout_p = float(attn.attn_drop.p) if block.training else 0.0
    if _is_v2(attn):  # Swin2SR: F.linear on qkv.weight with cat(q_bias, 0, v_bias), cosine attention
        qkv_bias = None if attn.q_bias is None else cat_filled((attn.q_bias, None, attn.v_bias))
        qkv = F.linear(x, attn.qkv.weight, qkv_bias)
        pad_qkv = None if qkv_bias is None else qkv_bias.to(qkv.dtype)
        bias = continuous_position_bias(attn.cpb_mlp, attn.relative_coords_table, attn.relative_position_index,
                                        heads, g.tokens)
        out = attend(qkv, pad_qkv, bias, heads, g, 1.0, dropout_p, block._swin_kernels_backend,
                     qkv_transform=lambda t, in_place: cosine_qkv(t, heads, attn.logit_scale, in_place),
                     owned_qkv=True)
    else:
        qkv, pad_qkv = project(x, (attn.qkv,), g)
        index = attn.relative_position_index if index is None else index
        bias = relative_position_bias(attn.relative_position_bias_table, g.window, index)
        out = attend(qkv, pad_qkv, bias, heads, g, float(attn.scale), dropout_p,
                     block._swin_kernels_backend)
    return attn.proj_drop(attn.proj(out))


def _size_reason(block, length: int, height: int, width: int, padded: bool) -> str | None:
    if length != height * width:
        return f"its input has {length} tokens, not {height}x{width}"
    if not padded and (height % block.window_size or width % block.window_size):
        return f"the {height}x{width} map is not a multiple of its window {block.window_size} (it does not pad)"
    return None


def _restoration(block, x, x_size):
    """SwinIR / DRCT (pre-norm) and Swin2SR (V2, post-norm): forward(x, x_size)."""
    height, width = (int(v) for v in x_size)
    batch, length, channels = x.shape
    reason = _size_reason(block, length, height, width, False) or fallback_reason(block, x)
    if reason is None:
        g = _geometry(block, height, width)
        if g.shifted and tuple(block.input_resolution) == (height, width) and not _mask_fits(block, block.attn_mask, g):
            reason = "its attn_mask buffer is not the shift mask of its input_resolution"
    if reason is not None:
        return _own_code(block, reason, x, x_size)
    shortcut = x
    if _is_v2(block.attn):
        attended = _attention(block, x.view(batch, height, width, channels), g).view(batch, length, channels)
        x = shortcut + block.drop_path(block.norm1(attended))
        return x + block.drop_path(block.norm2(block.mlp(x)))
    attended = _attention(block, block.norm1(x).view(batch, height, width, channels), g)
    x = shortcut + block.drop_path(attended.view(batch, length, channels))
    return x + block.drop_path(block.mlp(block.norm2(x)))


def _hab(block, x, x_size, rpi_sa, attn_mask):
    """HAT's hybrid attention block: window attention beside a channel-attention conv branch."""
    height, width = (int(v) for v in x_size)
    batch, length, channels = x.shape
    reason = _size_reason(block, length, height, width, False) or fallback_reason(block, x)
    if reason is None:
        g = _geometry(block, height, width)
        if not isinstance(rpi_sa, torch.Tensor) or rpi_sa.numel() != g.tokens * g.tokens:
            reason = f"the relative position index it was given does not index a {g.window} window"
        elif not _mask_fits(block, attn_mask, g):
            reason = "the attn_mask it was given is not the shift mask of this map"
    if reason is not None:
        return _own_code(block, reason, x, x_size, rpi_sa, attn_mask)
    shortcut = x
    normed = block.norm1(x).view(batch, height, width, channels)
    conv_x = block.conv_block(normed.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous().view(batch, length,
                                                                                                 channels)
    attended = _attention(block, normed, g, index=rpi_sa).view(batch, length, channels)
    x = shortcut + block.drop_path(attended) + conv_x * block.conv_scale
    return x + block.drop_path(block.mlp(block.norm2(x)))


def _detection(block, x, mask_matrix):
    """The detection copy: H, W on the block, pad to window multiples, then roll; the mask from the layer."""
    height, width = block.H, block.W
    batch, length, channels = x.shape
    if height is None or width is None:
        return _own_code(block, "its H / W are not set (its layer sets them before each call)", x, mask_matrix)
    reason = _size_reason(block, length, height, width, True) or fallback_reason(block, x)
    if reason is None:
        g = _geometry(block, int(height), int(width))
        if not _mask_fits(block, mask_matrix, g):
            reason = "the mask_matrix it was given is not the shift mask of this map"
    if reason is not None:
        return _own_code(block, reason, x, mask_matrix)
    shortcut = x
    attended = _attention(block, block.norm1(x).view(batch, g.height, g.width, channels), g)
    x = shortcut + block.drop_path(attended.reshape(batch, length, channels))
    return x + block.drop_path(block.mlp(block.norm2(x)))


def _returns_attention(block) -> bool:
    """laion_clap's HTSAT block returns (x, attention probabilities)."""
    return hasattr(block, "norm_before_mlp")


def _classification(block, x):
    """The official classification block (and HTSAT's): H, W = input_resolution, no padding, attn_mask buffer."""
    height, width = (int(v) for v in block.input_resolution)
    batch, length, channels = x.shape
    reason = _size_reason(block, length, height, width, False) or fallback_reason(block, x)
    if reason is None:
        g = _geometry(block, height, width)
        if g.shifted and not _mask_fits(block, block.attn_mask, g):
            reason = "its attn_mask buffer is not the shift mask of its input_resolution"
    if reason is not None:
        return _own_code(block, reason, x)
    shortcut = x
    attended = _attention(block, block.norm1(x).view(batch, height, width, channels), g)
    x = shortcut + block.drop_path(attended.view(batch, length, channels))
    x = x + block.drop_path(block.mlp(block.norm2(x)))
    if _returns_attention(block):
        return x, x.new_empty(0)  # the probabilities are never formed (the module docstring says why)
    return x


_FORWARDS = {"classification": _classification, "restoration": _restoration, "hab": _hab, "detection": _detection}


def replacement(block, *args, **kwargs):
    """Patched forward; same signature (the layout's parameter names) and result as the block's own."""
    return _FORWARDS[block._swin_kernels_layout](block, *args, **kwargs)


def not_window_attention_reason(module: nn.Module) -> str | None:
    """Why a module that owns a relative position table is not (shifted) window self-attention, or None.

    HAT's OCAB (overlapping cross-attention: queries from a window, keys and values from a larger overlapping
    window unfolded around it) owns a relative_position_bias_table and a window_size but attends across windows;
    no Swin kernel applies to it, and a lookalike detector should leave it unnamed.
    """
    if hasattr(module, "overlap_win_size") and isinstance(module._modules.get("unfold"), nn.Unfold):
        return "overlapping cross-attention (HAT's OCAB), not Swin window self-attention"
    return None
