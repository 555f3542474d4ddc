"""Pieces every model patch shares: the patched method, the fused attention branch, the q/k/v weight
concatenation, call options.

A patched block feeds ``functional.shifted_window_attention`` with the qkv map of the whole (unpartitioned)
feature map. Models that keep q, k and v as three Linears need their weights as one (3C, C) matrix:

* while a gradient must reach the weights (training), they are concatenated on every call — one 3C x C copy,
  small next to the activations of a training batch, and autograd splits the gradient back for free;
* otherwise (inference, frozen weights) the concatenation is cached and reused until one of the tensors changes:
  an in-place update bumps its version counter, and ``.to()`` / ``.half()`` / ``load_state_dict(assign=True)``
  replace its storage. Copying all Swin-T q/k/v weights (6.5 M values) took 7% of a batch-1 inference forward on
  one CPU thread (11 ms of 160 ms); the cache costs their size in memory (25 MiB in fp32).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

from .. import backends, functional
from ..backends import Request

BYPASSED_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
STATE_PREFIX = "_swin_kernels_"  # every attribute a patched block gets starts with it


class PatchedMethod:
    """The instance method of a patched block (its ``forward`` or another method): calls ``function(module, ...)``.

    A plain object rather than a bound method, so that pickling a patched model (torch.save(model)) and copying
    it keep the patch: a pickled bound method would be looked up again by name on unpickling, and find the
    class's method.
    """

    def __init__(self, module: nn.Module, function) -> None:
        self.module = module
        self.function = function

    def __call__(self, *args, **kwargs):
        return self.function(self.module, *args, **kwargs)


@dataclass(frozen=True)
class AttentionSpec:
    """What a block's attention asks of a backend, read off the block (explain, patch-time checks)."""

    heads: int
    head_dim: int
    window: tuple[int, int]  # the block's configured window (a family may clamp it per call)
    dropout: float
    weight: torch.Tensor  # a weight of the qkv projection: its device and dtype


class ConcatenatedParameters:
    """``torch.cat`` of tensors along dim 0 (None entries read as zeros like the first), cached when no grad flows."""

    def __init__(self) -> None:
        self.clear()

    def __call__(self, tensors) -> torch.Tensor:
        present = [t for t in tensors if t is not None]
        if torch.compiler.is_compiling() or (torch.is_grad_enabled() and any(t.requires_grad for t in present)):
            return _cat_filled(tensors)
        key = self._key_of(tensors)
        if key != self._key or any(ref.expired() for ref in self._refs):
            with torch.no_grad():
                self._value = _cat_filled(tensors)
            self._refs = [StorageWeakRef(t.untyped_storage()) for t in present]
            self._key = key
        return self._value

    @staticmethod
    def _key_of(tensors):
        # data_ptr and version catch moves and in-place updates; the weak storage refs (checked above) catch a
        # new storage landing at a freed address. Inference-mode tensors must not leak into autograd calls.
        return (torch.is_inference_mode_enabled(), tuple(
            None if t is None else (t.untyped_storage().data_ptr(), t.data_ptr(), t._version, t.dtype, t.device)
            for t in tensors))

    def clear(self) -> None:
        self._key = self._value = None
        self._refs = []

    # A copy of a patched model starts with an empty cache (the weak refs must not be duplicated).
    def __deepcopy__(self, memo) -> "ConcatenatedParameters":
        return ConcatenatedParameters()

    def __getstate__(self):
        return {}

    def __setstate__(self, state) -> None:
        self.__init__()


def _cat_filled(tensors) -> torch.Tensor:
    present = next(t for t in tensors if t is not None)
    return torch.cat([torch.zeros_like(present) if t is None else t for t in tensors])


def window_attention_branch(x, qkv_weight, qkv_bias, bias, num_heads: int, window, shift, scale: float,
                            dropout_p: float, backend: str, qkv_transform=None,
                            roll_before_pad: bool = False) -> torch.Tensor:
    """qkv Linear on the unpartitioned map x (B, H, W, C) -> fused (shifted) window attention -> (B, H, W, C').

    Padded tokens are zero vectors before the qkv Linear, so they see its bias. ``qkv_transform`` (per token and
    head, e.g. Swin V2's cosine normalisation) is applied to the map and to that bias alike.
    """
    qkv = F.linear(x, qkv_weight, qkv_bias)
    pad_qkv = None if qkv_bias is None else qkv_bias.to(qkv.dtype)
    if qkv_transform is not None:
        qkv = qkv_transform(qkv)
        pad_qkv = None if pad_qkv is None else qkv_transform(pad_qkv)
    return functional.shifted_window_attention(
        qkv, num_heads, window, shift, roll_before_pad=roll_before_pad, pad_qkv=pad_qkv, bias=bias.to(qkv.dtype),
        scale=scale, dropout_p=dropout_p, backend=backend,
    )


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
    return _lacks_dropout(backend, x.device.type, compute_dtype(x), window[0], window[1], head_dim)


@torch.compiler.assume_constant_result
def _lacks_dropout(backend, device_type, dtype, window_h, window_w, head_dim) -> bool:
    """Host-side logic that torch.compile treats as a constant (it reads the backend override's environment)."""
    name = backends.requested_name(backend)
    if name == "auto":
        return False
    base = Request("attention", torch.device(device_type), dtype, (window_h, window_w), head_dim)
    with_dropout = Request("attention", torch.device(device_type), dtype, (window_h, window_w), head_dim, True)
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
            return f"{name} is a {type(module).__name__}, not a torch.nn.Linear"
    return None


def hooks_reason(**modules) -> str | None:
    """Hooks on a module the fused path no longer calls would silently stop firing: refuse instead."""
    for name, module in modules.items():
        if any(getattr(module, attr, None) for attr in BYPASSED_HOOKS):
            return f"{name} has hooks, which the fused path would bypass"
    return None
