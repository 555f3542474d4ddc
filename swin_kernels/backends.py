"""Backend registry and dispatch.

A backend is a module under ``swin_kernels.ops`` that provides

    unavailable_reason() -> str | None          why it cannot run on this machine at all (None: it can)
    unsupported_reason(request) -> str | None   why it cannot run this particular call (None: it can)
    window_attention(qkv, pad_qkv, bias, num_heads, window, shift, scale, dropout_p) -> (B, H, W, C)
    window_partition(x, window, shift) -> (B·nW, M·M, C)
    window_reverse(windows, window, height, width, shift) -> (B, H, W, C)

all three differentiable. Implementations are imported lazily, so a missing compiler, library or GPU only
matters when that backend is asked for, and the error then says what is missing.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import torch

BACKEND_NAMES = ("reference", "triton", "cpp", "cuda")
_MODULES = {
    "reference": "swin_kernels.ops.reference_ops",
    "triton": "swin_kernels.ops.triton",
    "cpp": "swin_kernels.ops.cpp",
    "cuda": "swin_kernels.ops.cuda",
}
# "auto" tries these in order for tensors on each device type; the reference always can.
_AUTO_ORDER = {"cuda": ("triton", "cuda", "reference"), "cpu": ("cpp", "reference")}
ENV_OVERRIDE = "SWIN_KERNELS_BACKEND"


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run this call; the message says why."""


@dataclass(frozen=True)
class Request:
    """What a backend needs to know to say whether it can run a call."""

    op: str  # "attention", "partition" or "reverse"
    device: torch.device
    dtype: torch.dtype
    window: int
    head_dim: int | None = None
    dropout: bool = False


_LOADED: dict[str, tuple] = {}  # name -> (module or None, import error or None)


def _load(name: str):
    """The implementation module of a backend, or the reason it cannot be imported (imported once)."""
    if name not in _LOADED:
        try:
            _LOADED[name] = importlib.import_module(_MODULES[name]), None
        except Exception as error:  # a broken optional dependency must not break the package
            _LOADED[name] = None, f"{type(error).__name__}: {error}"
    return _LOADED[name]


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run on this machine, or None when it can."""
    if name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)} or 'auto'")
    module, import_error = _load(name)
    if module is None:
        return f"cannot be imported ({import_error})"
    return module.unavailable_reason()


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine (the reference always can)."""
    return [name for name in BACKEND_NAMES if unavailable_reason(name) is None]


def _reason(name: str, request: Request) -> str | None:
    reason = unavailable_reason(name)
    if reason is None:
        reason = _load(name)[0].unsupported_reason(request)
    return reason


def resolve(backend: str | None, request: Request):
    """The implementation module that runs ``request``: the named backend, or the first that can for 'auto'.

    'auto' (or None) may be overridden by the SWIN_KERNELS_BACKEND environment variable.
    """
    r = request
    return _LOADED[_resolve_name(backend, r.op, str(r.device), r.dtype, r.window, r.head_dim, r.dropout)][0]


@torch.compiler.assume_constant_result
def _resolve_name(backend, op, device, dtype, window, head_dim, dropout) -> str:
    """Name of the backend that runs the call: host-side logic that torch.compile treats as a constant."""
    request = Request(op, torch.device(device), dtype, window, head_dim, dropout)
    name = backend or "auto"
    if name == "auto":
        name = os.environ.get(ENV_OVERRIDE, "auto") or "auto"
    if name != "auto":
        reason = _reason(name, request)
        if reason is not None:
            raise BackendUnavailableError(f"{name}: {reason}")
        return name
    order = _AUTO_ORDER.get(request.device.type, ("reference",))
    reasons = []
    for candidate in order:
        reason = _reason(candidate, request)
        if reason is None:
            return candidate
        reasons.append(f"{candidate}: {reason}")
    raise BackendUnavailableError("no backend can run this call:\n  " + "\n  ".join(reasons))


def explain(request: Request) -> dict[str, str | None]:
    """For every backend, why it cannot run ``request`` (None where it can)."""
    return {name: _reason(name, request) for name in BACKEND_NAMES}
