"""swin_kernels.patch(model): route the attention of every Swin block of a model through the fused op.

Each supported implementation is a *family*: one module in this package that names its block classes and knows
how to run one of its blocks through ``swin_kernels.shifted_window_attention`` with that implementation's own
semantics (pad/roll order, window clamping, V2's cosine attention). A family module provides

    NAME                      what it patches, for messages
    CLASS_NAMES, MODULE_PREFIX the block classes it recognises (exact class names, under that module prefix)
    matches(module)           optional: a structural test used instead of CLASS_NAMES/MODULE_PREFIX, for code
                              copied into many packages under many module names
    REPLACES                  the name of the block method the patch replaces ("forward", or e.g. "_attn")
    unsupported_reason(block) why this block cannot take the fused path (None when it can)
    prepare(block)            per-block state of the fused path, created once at patch time
    replacement(block, ...)   the method that replaces REPLACES, same signature and results
    attention_spec(block)     AttentionSpec: heads, head_dim, window, dropout, a tensor (device, dtype)
    fallback_reason(block, x=None)  optional: why the patched block runs its own code for a call on x (None: as
                              configured), checked on every call and reported by explain()

Adding an implementation is one more module and one line in FAMILIES. Blocks are patched in place by giving the
block instance its own attribute (REPLACES); parameters, buffers and ``state_dict()`` keys stay as they are.
``unpatch`` removes the attribute, so the class's method runs again. Blocks that look like Swin blocks but cannot
be patched are left alone, with one warning per class and reason.
"""

from __future__ import annotations

import warnings
from collections import defaultdict

import torch
from torch import nn

from .. import backends
from ..backends import BackendUnavailableError, Request
from . import hf_swin, hf_swinv2, mm_swin, monai_swin, timm_swin, timm_swinv2_cr, torchvision_swin
from . import mmaction_swin, official_swin, torchvision_swin3d
from .common import STATE_PREFIX, AttentionSpec, PatchedMethod

FAMILIES = (hf_swin, hf_swinv2, timm_swin, torchvision_swin, torchvision_swin3d, mm_swin, monai_swin, mmaction_swin,
            timm_swinv2_cr, official_swin)


def family_of(module: nn.Module):
    """The family module that patches ``module``'s class, or None."""
    cls = type(module)
    for family in FAMILIES:
        matches = getattr(family, "matches", None)
        if matches is not None:
            if matches(module):
                return family
        elif cls.__name__ in family.CLASS_NAMES and cls.__module__.startswith(family.MODULE_PREFIX):
            return family
    return None


# Tensors only window attention owns: relative position tables and indices, V2's coordinate tables.
WINDOW_TENSORS = ("relative_position_bias_table", "relative_position_index", "relative_coords_table",
                  "relative_coordinates_log")
UNKNOWN_CLASS = "not a Swin block class this version of swin_kernels knows"
THREE_D = "a 3-D window attention class this version of swin_kernels does not know"


def _owns_window_tensor(module: nn.Module) -> bool:
    return any(name in module._parameters or name in module._buffers for name in WINDOW_TENSORS)


def _looks_like_window_attention(module: nn.Module) -> bool:
    """Window attention or a block around it, of any class: it owns a relative-position table/index, or it has
    window_size and shift_size and an attention (``attn``/``attention``) or a submodule owning such a table."""
    if official_swin.not_window_attention_reason(module) is not None:
        return False  # e.g. HAT's overlapping cross-attention: a table, but no Swin window attention
    if _owns_window_tensor(module):
        return True
    if not (hasattr(module, "window_size") and hasattr(module, "shift_size")):
        return False
    return any(hasattr(module, name) for name in ("attention", "attn")) or any(
        _owns_window_tensor(m) for m in module.modules())


def _is_3d(module: nn.Module) -> bool:
    for m in module.modules():
        window = getattr(m, "window_size", None)
        if isinstance(window, (tuple, list, torch.Size)) and len(window) == 3:
            return True
    return False


def _under(path: str, ancestor: str) -> bool:
    """Whether ``path`` is ``ancestor`` or lies inside it ("" is the model itself)."""
    return ancestor == "" or path == ancestor or path.startswith(ancestor + ".")


def unpatched_lookalikes(model: nn.Module) -> list[tuple[str, str, str]]:
    """(path, class name, reason) of every module of ``model`` that looks like window attention (a relative-position
    table or index, window_size and shift_size around an attention) that no family recognises: neither it, nor a
    module around it, nor one inside it is a block a family handles (those are patched, or declined with their own
    reason by ``patch``). The outermost such module is named, not its attention as well. 3-D ones are named with
    the reason THREE_D (torchvision's Swin3D, MONAI's and mmaction2's 3-D blocks are families of their own)."""
    modules = list(model.named_modules())
    known = [path for path, module in modules if family_of(module) is not None]
    found: list[tuple[str, str, str]] = []
    for path, module in modules:
        if not _looks_like_window_attention(module):
            continue
        if any(_under(path, k) or _under(k, path) for k in known) or any(_under(path, p) for p, _, _ in found):
            continue
        found.append((path, type(module).__name__, THREE_D if _is_3d(module) else UNKNOWN_CLASS))
    return found


def is_patched(module: nn.Module) -> bool:
    return "_swin_kernels_backend" in vars(module)


def _check_backend_for(module: nn.Module, family, backend: str) -> str | None:
    """Why the named ``backend`` cannot run this block's attention as its weights stand (device, dtype, sizes)."""
    spec = family.attention_spec(module)
    request = Request("attention", spec.weight.device, spec.weight.dtype, spec.window, spec.head_dim)
    return backends.reason(backend, request)


def patch(model: nn.Module, backend: str = "auto") -> nn.Module:
    """Run every supported Swin block of ``model`` through ``swin_kernels.shifted_window_attention``.

    Supported: Hugging Face transformers SwinLayer (SwinModel, SwinForImageClassification, SwinForMaskedImageModeling,
    SwinBackbone and every model built on them), DonutSwinLayer, MaskFormerSwinLayer and Swinv2Layer; timm's
    SwinTransformerBlock and SwinTransformerV2Block (every swin_* / swinv2_* model, features_only backbones too);
    torchvision's ShiftedWindowAttention and ShiftedWindowAttentionV2 (swin_t/s/b, swin_v2_t/s/b) and
    ShiftedWindowAttention3d (swin3d_t/s/b); timm's SwinTransformerV2CrBlock; OpenMMLab's ShiftWindowMSA
    (mmpretrain V1/V2, mmdet, mmseg) and mmaction2's SwinTransformerBlock3D (Video Swin); MONAI's
    SwinTransformerBlock, 2-D and 3-D (SwinUNETR); the official layout's copies (official_swin). Window attention
    no family recognises is named in a warning (unpatched_lookalikes). ``backend`` is the backend every patched
    block asks for ("auto" picks per call). A named backend is checked here against each
    block's weights (device, dtype, window, head_dim): one that cannot run them raises BackendUnavailableError now
    rather than inside the forward. Patching again changes the backend. Returns ``model``.
    """
    backends.check_name(backend)
    if backend != "auto" and backends.unavailable_reason(backend) is not None:
        raise BackendUnavailableError(f"{backend}: {backends.unavailable_reason(backend)}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"patch() takes a torch.nn.Module, got {type(model).__name__}")
    skipped = defaultdict(list)  # (class name, reason) -> paths
    todo = []
    for path, module in model.named_modules():
        family = family_of(module)
        if family is None:
            continue
        reason = family.unsupported_reason(module)
        if reason is None and family.REPLACES in vars(module) and not is_patched(module):
            reason = f"its {family.REPLACES} was already replaced by someone else"
        if reason is not None:
            skipped[(type(module).__name__, reason)].append(path)
            continue
        if backend != "auto":
            why = _check_backend_for(module, family, backend)
            if why is not None:
                raise BackendUnavailableError(f"{backend} cannot run {type(module).__name__} {path or '(the model)'} "
                                              f"with its weights as they are: {why}")
        todo.append((module, family))
    for path, name, reason in unpatched_lookalikes(model):
        skipped[(name, reason)].append(path or "(the model)")
    for module, family in todo:
        if not is_patched(module):
            family.prepare(module)
            setattr(module, family.REPLACES, PatchedMethod(module, family.replacement, family.REPLACES))
        module._swin_kernels_backend = backend
    for (name, reason), paths in skipped.items():
        where = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        warnings.warn(f"swin_kernels.patch left {len(paths)} {name} block(s) unchanged ({where}): {reason}",
                      stacklevel=2)
    if not todo and not skipped:
        warnings.warn(f"swin_kernels.patch found no Swin block in {type(model).__name__}; nothing was changed",
                      stacklevel=2)
    return model


def unpatch(model: nn.Module) -> nn.Module:
    """Restore the original methods of every block ``patch`` changed. Returns ``model``."""
    for module in model.modules():
        if is_patched(module):
            state = vars(module)
            family = family_of(module)
            replaced = family.REPLACES if family is not None else "forward"
            for name in [name for name in state if name == replaced or name.startswith(STATE_PREFIX)]:
                del state[name]
    return model


def patched_blocks(model: nn.Module):
    """(path, block, family) of every block of ``model`` a family recognises, patched or not."""
    for path, module in model.named_modules():
        family = family_of(module)
        if family is not None:
            yield path, module, family


__all__ = ["FAMILIES", "AttentionSpec", "family_of", "is_patched", "patch", "patched_blocks", "unpatch",
           "unpatched_lookalikes"]
