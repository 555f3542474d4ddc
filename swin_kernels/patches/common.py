"""Pieces every model patch shares: the patched method, the qkv projection, the fused attention branch, the
checks a patched block makes on every call, call options.

A patched block feeds ``functional.shifted_window_attention`` with the qkv map of the whole (unpartitioned)
feature map. It decides on every call what its sub-modules are *now* (a user may wrap, quantize or hook them
after ``patch()``):

* projections that are plain ``torch.nn.Linear`` without hooks are read: HF's three q/k/v Linears become one
  (3C, C) matrix, concatenated on every call (no cache: ``p.data`` writes, which EMA code and checkpoint loaders
  make, are invisible to version counters, so no cache keyed on them can be right). The copy of all Swin-T q/k/v
  weights (12 blocks, 6.5 M fp32 values) took 1.7 ms per forward on one CPU thread (best of 20; median 10 ms on a
  machine at load 11 on 2 cores), beside 592 ms for a patched batch-1 fp32 inference forward and 3.5 s at batch 8
  in the same run (an earlier idle measurement: 11 ms of 160 ms at batch 1, 7 %). On a GPU it is one small copy
  per block next to activations that grow with the batch;
* any other projection (a LoRA-style wrapper, a dynamically quantized Linear, a Linear with hooks) is called, on
  the map padded as the block's own code pads it, and its outputs are concatenated;
* hooks on a module the fused path does not call, or anything else the fused op cannot honour, make the block
  run its own code for that call, with one ``FallbackWarning`` per class and reason.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

from .. import backends, functional
from . import tracing
from ..backends import FallbackWarning, Request
from ..geometry import WindowGeometry

BYPASSED_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
STATE_PREFIX = "_swin_kernels_"  # every attribute a patched block gets starts with it


class PatchedMethod:
    """The instance method of a patched block (its ``forward`` or another method): calls ``function(module, ...)``.

    A plain object rather than a bound method, so that pickling a patched model (torch.save(model)) and copying
    it keep the patch: a pickled bound method would be looked up again by name on unpickling, and find the
    class's method.
    """

    def __init__(self, module: nn.Module, function, name: str | None = None) -> None:
        self.module = module
        self.function = function
        # the attribute of the module it replaces; known at patch time, so a compiled call never sees it change
        # (found at the first call when not given)
        self.name = name
        tracing.guard_scripting(module)  # torch.jit.script raises instead of running the block's class code

    def __call__(self, *args, **kwargs):
        tracing.check_legacy_onnx_export(self.module)
        if getattr(self, "name", None) is None:  # also a PatchedMethod pickled before it had a name
            self.name = next(name for name, value in vars(self.module).items() if value is self)
        return tracing.call_patched(self.module, self.name, *args, **kwargs)  # an fx leaf (see tracing.py)


@dataclass(frozen=True)
class AttentionSpec:
    """What a block's attention asks of a backend, read off the block (explain, patch-time checks)."""

    heads: int
    head_dim: int
    window: tuple[int, ...]  # the configured window, (rows, columns) or (depth, rows, columns); may be clamped per call
    dropout: float
    weight: torch.Tensor  # a floating tensor of the attention (e.g. its bias table): its device and dtype


def window_attention_branch(x, qkv_weight, qkv_bias, bias, num_heads: int, window, shift, scale: float,
                            dropout_p: float, backend: str, qkv_transform=None,
                            roll_before_pad: bool = False) -> torch.Tensor:
    """qkv Linear (weight and bias given) on the unpartitioned map x (B, H, W, C) -> fused (shifted) window
    attention -> (B, H, W, C'). Padded tokens are zero vectors before the qkv Linear, so they see its bias."""
    qkv = F.linear(x, qkv_weight, qkv_bias)
    pad_qkv = None if qkv_bias is None else qkv_bias.to(qkv.dtype)
    g = WindowGeometry.of(x.shape[1:-1], window, shift, roll_before_pad)
    return attend(qkv, pad_qkv, bias, num_heads, g, scale, dropout_p, backend, qkv_transform, owned_qkv=True)


def attend(qkv, pad_qkv, bias, num_heads: int, g: WindowGeometry, scale: float, dropout_p: float, backend: str,
           qkv_transform=None, owned_qkv: bool = False) -> torch.Tensor:
    """Fused (shifted) window attention on the qkv map (B, H, W, 3C) whose padded tokens get ``pad_qkv`` (3C,), with
    the call's geometry ``g`` (the block's, built once per call).

    ``qkv_transform(t, in_place)`` (per token and head, e.g. Swin V2's cosine normalisation) is applied to the map
    and, when the map has padded tokens, to ``pad_qkv`` (without padding nothing reads it, so it is dropped: one
    transform and one pad branch in the kernels less). ``owned_qkv``: qkv is a tensor of this call alone (a
    projection's fresh output, which no hook has seen), so the transform may overwrite it when no gradient flows
    through it. An empty batch gives the empty result.
    """
    if pad_qkv is not None and not g.has_padding:
        pad_qkv = None
    if qkv_transform is not None:
        qkv = qkv_transform(qkv, owned_qkv and not qkv.requires_grad)
        pad_qkv = None if pad_qkv is None else qkv_transform(pad_qkv, False)  # may be the bias parameter itself
    if qkv.shape[0] == 0:
        return qkv[..., : qkv.shape[-1] // 3].clone()
    return functional.attention_on_geometry(qkv, num_heads, g, pad_qkv=pad_qkv, bias=bias.to(qkv.dtype),
                                            scale=scale, dropout_p=dropout_p, backend=backend)


def has_hooks(module: nn.Module) -> bool:
    """Whether any hook of BYPASSED_HOOKS is registered on ``module`` (checked on every patched call: kept cheap)."""
    d = module.__dict__
    return bool(d.get("_forward_hooks") or d.get("_forward_pre_hooks") or d.get("_backward_hooks")
                or d.get("_backward_pre_hooks"))


def is_plain_linear(module: nn.Module) -> bool:
    """A torch.nn.Linear itself (not a subclass, wrapper or quantized Linear) without hooks: safe to read."""
    return type(module) is nn.Linear and not has_hooks(module)


def project(x: torch.Tensor, modules, geometry: WindowGeometry):
    """(qkv, pad_qkv): the outputs of the projection ``modules`` on x (B, H, W, C), concatenated on the last
    dimension, and what they give a padded token (a zero vector; None: nothing is padded, or zeros).

    Plain Linears are read (one F.linear on their concatenated weights); anything else is called as the block's
    own code calls it, on the map zero-padded to whole windows, so wrappers, quantized Linears and hooks run.
    """
    if all(is_plain_linear(m) for m in modules):
        if len(modules) == 1:
            weight, bias = modules[0].weight, modules[0].bias
        else:
            weight = torch.cat([m.weight for m in modules])
            biases = [m.bias for m in modules]
            bias = None if all(b is None for b in biases) else cat_filled(biases)
        qkv = F.linear(x, weight, bias)
        return qkv, None if bias is None else bias.to(qkv.dtype)
    g = geometry
    rows, cols = g.padded_height - g.height, g.padded_width - g.width
    padded = F.pad(x, (0, 0, 0, cols, 0, rows)) if rows or cols else x
    outputs = [m(padded) for m in modules]
    out = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)
    if not (rows or cols):
        return out, None
    pad_qkv = out[0, -1, -1] if out.shape[0] else None  # the bottom-right token is padding
    return out[:, :g.height, :g.width], pad_qkv


def cat_filled(tensors) -> torch.Tensor:
    """torch.cat of tensors along dim 0, None entries read as zeros like the first present one."""
    present = next(t for t in tensors if t is not None)
    return torch.cat([torch.zeros_like(present) if t is None else t for t in tensors])


class ConcatenatedParameters:
    """``cat_filled`` as a per-block object (kept for family modules written against it). It caches nothing: no
    cache keyed on version counters sees ``p.data`` writes."""

    def __call__(self, tensors) -> torch.Tensor:
        return cat_filled(tensors)


def bypassed_hooks_reason(root: nn.Module, name: str, called=()) -> str | None:
    """Why hooks would silently stop firing: ``root`` or a module under it that the fused path does not call (all
    but ``called`` and what they contain) has hooks. None when none has. A walk over a handful of modules."""
    skipped = {id(c) for c in called}
    stack = [root]
    while stack:
        module = stack.pop()
        if id(module) in skipped:
            continue
        if has_hooks(module):
            return f"{_module_path(root, name, module)} has hooks, which the fused path would bypass"
        stack.extend(child for child in module._modules.values() if child is not None)
    return None


def _module_path(root: nn.Module, name: str, target: nn.Module) -> str:
    """``name.child.grandchild`` of ``target`` under ``root`` (only for messages: found again by a walk)."""
    for path, module in root.named_modules(prefix=name, remove_duplicate=False):
        if module is target:
            return path
    return name


def tensor_weights_reason(**linears) -> str | None:
    """Why F.linear cannot read these modules' ``weight``/``bias`` as the library's own code does (None: it can)."""
    for name, module in linears.items():
        if not isinstance(getattr(module, "weight", None), torch.Tensor):
            cls = type(module)
            return f"{name} ({cls.__module__}.{cls.__qualname__}) has no weight tensor for the library's own code to read"
    return None


_WARNED_OWN_CODE: set[tuple[str, str]] = set()


def run_own_code_warning(block: nn.Module, reason: str) -> None:
    """Say once per class and reason that a patched block runs its own (unfused) code."""
    key = (type(block).__qualname__, reason)
    if key not in _WARNED_OWN_CODE:
        _WARNED_OWN_CODE.add(key)
        warnings.warn(f"swin_kernels: a patched {type(block).__name__} runs its own unfused code: {reason}. "
                      "swin_kernels.explain(model) lists what runs where.", FallbackWarning, stacklevel=4)


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the qkv Linear produces from x: autocast's where it is on for x's device, else x's."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


def named_backend_lacks_dropout(backend: str, x: torch.Tensor, window, head_dim: int, dropout_p: float) -> bool:
    """A block with attention dropout, in training, whose *named* backend has no dropout: it runs its own forward
    (the model's own unfused code, with its own dropout) instead of failing. 'auto' picks a backend that can."""
    if dropout_p == 0.0:
        return False
    return _lacks_dropout(backend, x.device.type, compute_dtype(x), window[-2], window[-1], head_dim,
                          _window_depth(window))


def dropout_reason(backend: str, spec, x: torch.Tensor | None, window, training: bool) -> str | None:
    """Why the block runs its own code for a call on x (None: as configured, on its weights' device and dtype):
    attention dropout in training on a named backend without dropout. None when that is not the case.

    ``spec``: the block's AttentionSpec, or a function returning it (called only in training, where dropout can
    apply: an inference call pays nothing for it); ``window`` None: the spec's."""
    if not training:
        return None
    spec = spec() if callable(spec) else spec
    p = spec.dropout
    if p == 0.0:
        return None
    window = spec.window if window is None else window
    if x is None:
        device = spec.weight.device
        dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else spec.weight.dtype
    else:
        device, dtype = x.device, compute_dtype(x)
    if not _lacks_dropout(backend, device.type, dtype, window[-2], window[-1], spec.head_dim, _window_depth(window)):
        return None
    return f"attention dropout (p={p:g}) in training, which the {backends.requested_name(backend)} backend lacks"


def linear_features(module: nn.Module) -> tuple[int, int]:
    """(in, out) features of a Linear-like module: its attributes, its weight's shape or its base layer's."""
    for candidate in (module, getattr(module, "base_layer", None)):
        if candidate is None:
            continue
        if isinstance(getattr(candidate, "in_features", None), int):
            return candidate.in_features, candidate.out_features
        weight = getattr(candidate, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() == 2:
            return weight.shape[1], weight.shape[0]
    raise TypeError(f"cannot tell the features of {type(module).__module__}.{type(module).__qualname__}")


def _window_depth(window) -> int:
    """The depth of a volume's (depth, rows, columns) window; 0 for a map's (rows, columns)."""
    return int(window[0]) if len(window) == 3 else 0


@backends.constant_result
def _lacks_dropout(backend, device_type, dtype, window_h, window_w, head_dim, window_d=0) -> bool:
    """Host-side logic that torch.compile treats as a constant (it reads the backend override's environment).
    ``window_d``: the window's depth for a volume, 0 for a map."""
    name = backends.requested_name(backend)
    if name == "auto":
        return False
    window = (window_d, window_h, window_w) if window_d else (window_h, window_w)
    base = Request("attention", torch.device(device_type), dtype, window, head_dim)
    with_dropout = Request("attention", torch.device(device_type), dtype, window, head_dim, True)
    return backends.reason(name, base) is None and backends.reason(name, with_dropout) is not None


def extra_arg_names(module: nn.Module, skip: int = 2) -> tuple[str, ...]:
    """Names of the positional parameters the class forward takes after its first ``skip`` (e.g. hidden_states,
    input_dimensions)."""
    parameters = list(inspect.signature(type(module).forward).parameters.values())[1 + skip:]
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in parameters if p.kind in positional)


def call_options(module: nn.Module, args: tuple, kwargs: dict) -> dict:
    """Name the extra positional arguments of a block call the way the original forward names them."""
    options = dict(zip(module._swin_kernels_arg_names, args))
    options.update(kwargs)
    return options


def original(module: nn.Module, method: str, *args, **kwargs):
    """Run the block's own (class) method, e.g. when attention weights are asked for."""
    return getattr(type(module), method)(module, *args, **kwargs)


def plain_linear_reason(**linears) -> str | None:
    """Why these submodules cannot be bypassed by F.linear on their weights (None when they can)."""
    for name, module in linears.items():
        if type(module) is not nn.Linear:
            cls = type(module)
            return (f"{name} is a {cls.__module__}.{cls.__qualname__}, which the fused path cannot read as a "
                    "torch.nn.Linear; the block keeps its own code")
    return None


def hooks_reason(**modules) -> str | None:
    """Hooks on a module the fused path no longer calls would silently stop firing: refuse instead."""
    for name, module in modules.items():
        if has_hooks(module):
            return f"{name} has hooks, which the fused path would bypass"
    return None


def given_mask_is_shift_mask(block, mask, g) -> bool:
    """Whether the mask a block was handed (or keeps) for map geometry ``g`` is the shift mask the fused op builds.

    The comparison reads the mask's values (a device-to-host synchronisation on a GPU), so a mask tensor that
    passed once is remembered by its storage address and version and not read again while neither changes.
    Needs ``block._swin_kernels_masks = {}`` (set by the family's prepare).
    """
    if not g.shifted:
        return True  # unshifted blocks apply no mask
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != (g.num_windows, g.tokens, g.tokens):
        return False
    if torch.compiler.is_compiling():
        return True
    from ..reference import shift_attention_mask

    cache = block._swin_kernels_masks
    seen = ("verified", mask.data_ptr(), mask._version, mask.dtype, mask.device, g.sizes, g.window, g.shift)
    alive = cache.get(seen)
    if alive is not None and not alive.expired():  # the same live tensor, unchanged since it was read
        return True
    key = (g.sizes, g.window, mask.dtype, mask.device)
    expected = cache.get(key)
    if expected is None:
        expected = cache[key] = shift_attention_mask(g, mask.dtype, mask.device)
    if not torch.equal(mask, expected):
        return False
    for stale in [k for k, ref in cache.items() if k[0] == "verified" and ref.expired()]:
        del cache[stale]  # masks computed per call (SwinIR, MONAI) die after it
    cache[seen] = StorageWeakRef(mask.untyped_storage())
    return True

