"""swin_kernels.explain: which backend runs a call, a module or every block of a model, and why the others do not.

    swin_kernels.explain(swin_kernels.shifted_window_attention, qkv, 3, 7, 3)   # a call, with its arguments
    swin_kernels.explain(fused_window_attention_module, x)                       # a module (x optional)
    swin_kernels.explain(model)                     # a model: one line per distinct backend and reason
    swin_kernels.explain(model, verbose=True)       # the same, then every block

The answer is the dispatcher's own (backends.choose), for the call as it would run now: tensors' device and
dtype (autocast's dtype where autocast is on), the window after the module's clamping, dropout in training.
``str()`` of the result reads as a short report; its fields are there for programs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from . import backends, functional
from .backends import Request
from .geometry import WindowGeometry


@dataclass
class Explanation:
    """The backend one call (or one block's calls) runs on, and every backend's reason not to (None: it can)."""

    what: str
    request: Request | None
    asked_for: str = "auto"
    backend: str | None = None
    reasons: dict[str, str | None] = field(default_factory=dict)
    note: str = ""

    def __str__(self) -> str:
        head = f"{self.what}: "
        if self.backend is None:
            head += self.note or "no backend can run it"
        else:
            head += f"runs on {self.backend}" + (f" ({self.note})" if self.note else "")
        lines = [head]
        for name, why in self.reasons.items():
            if name != self.backend:
                lines.append(f"  {name}: {'could run it' if why is None else why}")
        return "\n".join(lines)


@dataclass
class ModelExplanation:
    """One Explanation per Swin block of a model, in module order (path, explanation). ``str()`` gives one line per
    distinct backend and reason with its count; with ``verbose`` every block follows."""

    model: str
    blocks: list[tuple[str, Explanation]]
    verbose: bool = False

    def backends_used(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, e in self.blocks:
            key = e.backend or "its own forward"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def summary(self) -> str:
        groups: dict[tuple, int] = {}
        for _, e in self.blocks:
            others = tuple((n, w) for n, w in e.reasons.items() if n != e.backend)
            key = (e.backend, e.note, others)
            groups[key] = groups.get(key, 0) + 1
        lines = [f"{self.model}: {len(self.blocks)} Swin block(s)" if self.blocks else f"{self.model}: no Swin block"]
        for (backend, note, others), count in groups.items():
            head = f"runs on {backend}" + (f" ({note})" if note else "") if backend else (note or "no backend can run it")
            lines.append(f"- {count} block(s): {head}")
            lines.extend(f"    {n}: {'could run it' if w is None else w}" for n, w in others)
        return "\n".join(lines)

    def __str__(self) -> str:
        if not self.verbose:
            return self.summary()
        lines = [self.summary(), "per block:"]
        for path, e in self.blocks:
            lines.append(f"- {path}: " + str(e).replace("\n", "\n  "))
        return "\n".join(lines)


def _decide(what: str, request: Request, asked_for: str | None) -> Explanation:
    asked = backends.requested_name(asked_for)
    name, sentence = backends.choose(asked, request, warn=False)
    reasons = backends.reasons(request)
    note = ""
    if name is None:
        note = sentence
    elif asked == "auto" and name == "reference" and any(reasons[b] is not None for b in backends.FUSED_BACKENDS
                                                           if b in backends.AUTO_ORDER.get(request.device.type, ())):
        note = "the unfused reference: every fused backend declined"
    return Explanation(what, request, asked, name, reasons, note)


def _compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    if dtype.is_floating_point and torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return dtype


# ---------------------------------------------------------------------------------------------------- calls
def _explain_call(fn, args, kwargs) -> Explanation:
    bound = _bind(fn, args, kwargs)
    backend = bound.get("backend")
    if fn is functional.shifted_window_attention:
        qkv, heads = bound["qkv"], bound["num_heads"]
        g = WindowGeometry.of(qkv.shape[1:-1], bound["window_size"], bound.get("shift_size", 0),
                              bound.get("roll_before_pad", False))
        request = Request("attention", qkv.device, qkv.dtype, g.window, qkv.shape[-1] // (3 * heads),
                          bound.get("dropout_p", 0.0) > 0.0)
    elif fn is functional.window_partition:
        x = bound["x"]
        g = WindowGeometry.of(x.shape[1:-1], bound["window_size"], bound.get("shift_size", 0))
        request = Request("partition", x.device, x.dtype, g.window)
    else:
        w = bound["windows"]
        g = WindowGeometry(bound["height"], bound["width"], bound["window_size"], bound.get("shift_size", 0),
                           depth=bound.get("depth"))
        request = Request("reverse", w.device, w.dtype, g.window)
    return _decide(f"{fn.__name__} ({request})", request, backend)


def _bind(fn, args, kwargs) -> dict:
    import inspect

    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


# -------------------------------------------------------------------------------------------------- modules
def _explain_fused_module(module, x: torch.Tensor | None) -> Explanation:
    weight = module.qkv.weight
    device = weight.device if x is None else x.device
    dtype = _compute_dtype(device, weight.dtype if x is None else x.dtype)
    if x is None:
        window, note = module.window_size, "configured window; its clamping may shrink it on small maps"
    else:
        window, note = module.geometry(*x.shape[1:-1]).window, ""
    request = Request("attention", device, dtype, window, module.dim // module.num_heads,
                      module.training and module.attn_drop > 0.0)
    explanation = _decide(f"{type(module).__name__} ({request})", request, module.backend)
    if note and not explanation.note:
        explanation.note = note
    return explanation


def _explain_model(model: nn.Module, verbose: bool = False) -> ModelExplanation:
    from .patches import is_patched, patched_blocks

    entries = []
    for path, block, family in patched_blocks(model):
        spec = family.attention_spec(block)
        device = spec.weight.device
        request = Request("attention", device, _compute_dtype(device, spec.weight.dtype), spec.window,
                          spec.head_dim, block.training and spec.dropout > 0.0)
        what = f"{type(block).__name__} ({request})"
        if not is_patched(block):
            reason = family.unsupported_reason(block)
            entries.append((path, Explanation(what, request, "", None, backends.reasons(request),
                                              "not patched: runs its own forward" +
                                              (f" ({reason})" if reason else " (call swin_kernels.patch)"))))
            continue
        fallback = getattr(family, "fallback_reason", None)
        why = fallback(block) if fallback is not None else None
        if why is not None:
            entries.append((path, Explanation(what, request, block._swin_kernels_backend, None,
                                              backends.reasons(request), f"runs its own forward: {why}")))
            continue
        entries.append((path, _decide(what, request, block._swin_kernels_backend)))
    from .patches import unpatched_lookalikes

    for path, name, reason in unpatched_lookalikes(model):  # window attention no family recognises
        entries.append((path or "(the model)", Explanation(name, None, "", None, {}, f"not patched: {reason}")))
    return ModelExplanation(type(model).__name__, entries, verbose)


def explain(target, *args, verbose: bool = False, **kwargs):
    """Which backend runs ``target`` and why the others do not.

    target: a function of swin_kernels (shifted_window_attention, window_partition, window_reverse) followed by
    the arguments of the call; a FusedWindowAttention (optionally with its input); or any model (every Swin
    block a patch family recognises, patched or not; ``verbose=True`` lists every block after the summary).
    Returns an Explanation or a ModelExplanation.
    """
    from .modules import FusedWindowAttention

    if target in (functional.shifted_window_attention, functional.window_partition, functional.window_reverse):
        return _explain_call(target, args, kwargs)
    if isinstance(target, FusedWindowAttention):
        return _explain_fused_module(target, args[0] if args else kwargs.get("x"))
    if isinstance(target, nn.Module):
        return _explain_model(target, verbose)
    raise TypeError(f"explain() takes a swin_kernels function and its arguments, a FusedWindowAttention or a model, "
                    f"got {type(target).__name__}")


__all__ = ["Explanation", "ModelExplanation", "explain"]
