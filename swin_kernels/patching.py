"""swin_kernels.patch(model): route the attention branch of every Swin block of a model through the fused op.

Blocks are found by type (the exact classes listed in ``_FAMILIES``), patched in place by giving the block
instance its own ``forward``; parameters, buffers and ``state_dict()`` keys stay as they are. ``unpatch`` removes
that instance attribute, so the class's forward runs again. Blocks that look like Swin blocks but cannot be
patched are left alone, with one warning per class and reason.
"""

from __future__ import annotations

import inspect
import warnings
from collections import defaultdict

from torch import nn

from . import patch_hf_swin, patch_hf_swinv2
from .backends import BACKEND_NAMES, BackendUnavailableError, unavailable_reason

# (module prefix of the class, class names, family module with forward / unsupported_reason / prepare)
_FAMILIES = (
    ("transformers.models.", patch_hf_swin.CLASS_NAMES, patch_hf_swin),
    ("transformers.models.", patch_hf_swinv2.CLASS_NAMES, patch_hf_swinv2),
)
STATE_PREFIX = "_swin_kernels_"  # every attribute a patched block gets starts with it


class PatchedForward:
    """The instance ``forward`` of a patched block: calls ``function(module, ...)``.

    A plain object rather than a bound method, so that pickling a patched model (torch.save(model)) and copying
    it keep the patch: a pickled bound method would be looked up again by name on unpickling, and find the
    class's forward.
    """

    def __init__(self, module: nn.Module, function) -> None:
        self.module = module
        self.function = function

    def __call__(self, *args, **kwargs):
        return self.function(self.module, *args, **kwargs)


def _family(module: nn.Module):
    cls = type(module)
    for prefix, names, family in _FAMILIES:
        if cls.__name__ in names and cls.__module__.startswith(prefix):
            return family
    return None


def _looks_like_swin_block(module: nn.Module) -> bool:
    """A window-attention block of a class this version does not know (e.g. CLAP's audio Swin, Swin2SR)."""
    has_attention = any(hasattr(module, name) for name in ("attention", "attn"))
    return has_attention and hasattr(module, "window_size") and hasattr(module, "shift_size")


def _unknown_block_reason(module: nn.Module) -> str:
    if type(module).__module__.startswith("timm."):
        return ("timm's Swin blocks are not patched by this version (timm rolls the map before padding it, "
                "the fused op pads first; they agree only on maps that need no padding)")
    return "not a Swin block class this version of swin_kernels knows"


def _extra_arg_names(module: nn.Module) -> tuple[str, ...]:
    """Names of the positional parameters the class forward takes after (hidden_states, input_dimensions)."""
    parameters = list(inspect.signature(type(module).forward).parameters.values())[3:]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in parameters if p.kind in positional)


def patch(model: nn.Module, backend: str = "auto") -> nn.Module:
    """Run every supported Swin block of ``model`` through ``swin_kernels.shifted_window_attention``.

    Supported: Hugging Face transformers SwinLayer (5.x and 4.x layouts; SwinModel, SwinForImageClassification,
    SwinForMaskedImageModeling, SwinBackbone and every model built on them), DonutSwinLayer, MaskFormerSwinLayer
    and Swinv2Layer. ``backend`` is the backend every patched block asks for ("auto" picks per call; a named
    backend that cannot run on this machine raises BackendUnavailableError here). Patching again changes the
    backend. Returns ``model``.
    """
    if backend != "auto" and backend not in BACKEND_NAMES:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKEND_NAMES)} or 'auto'")
    if backend != "auto" and unavailable_reason(backend) is not None:
        raise BackendUnavailableError(f"{backend}: {unavailable_reason(backend)}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"patch() takes a torch.nn.Module, got {type(model).__name__}")
    skipped = defaultdict(list)  # (class name, reason) -> paths
    patched = 0
    for path, module in model.named_modules():
        family = _family(module)
        if family is None:
            if _looks_like_swin_block(module):
                skipped[(type(module).__name__, _unknown_block_reason(module))].append(path)
            continue
        reason = family.unsupported_reason(module)
        if reason is None and "forward" in vars(module) and not is_patched(module):
            reason = "its forward was already replaced by someone else"
        if reason is not None:
            skipped[(type(module).__name__, reason)].append(path)
            continue
        if not is_patched(module):
            family.prepare(module)
            module._swin_kernels_arg_names = _extra_arg_names(module)
            module.forward = PatchedForward(module, family.forward)
        module._swin_kernels_backend = backend
        patched += 1
    for (name, reason), paths in skipped.items():
        where = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
        warnings.warn(f"swin_kernels.patch left {len(paths)} {name} block(s) unchanged ({where}): {reason}",
                      stacklevel=2)
    if patched == 0 and not skipped:
        warnings.warn(f"swin_kernels.patch found no Swin block in {type(model).__name__}; nothing was changed",
                      stacklevel=2)
    return model


def is_patched(module: nn.Module) -> bool:
    return "_swin_kernels_backend" in vars(module)


def unpatch(model: nn.Module) -> nn.Module:
    """Restore the original forward of every block ``patch`` changed. Returns ``model``."""
    for module in model.modules():
        if is_patched(module):
            state = vars(module)
            for name in [name for name in state if name == "forward" or name.startswith(STATE_PREFIX)]:
                del state[name]
    return model
