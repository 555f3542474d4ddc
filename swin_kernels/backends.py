"""Backend registry and dispatch.

A backend is a module under ``swin_kernels.ops`` that provides

    unavailable_reason() -> str | None          why it cannot run on this machine at all (None: it can)
    unsupported_reason(request) -> str | None   why it cannot run this particular call (None: it can)
    window_attention(qkv, pad_qkv, bias, num_heads, geometry, scale, dropout_p) -> (B, H, W, C)
    window_partition(x, geometry) -> (B·nW, Mh·Mw, C)
    window_reverse(windows, geometry) -> (B, H, W, C)

all three differentiable (``geometry`` is a ``swin_kernels.geometry.WindowGeometry``). Implementations are
imported lazily, so a missing compiler, library or GPU only matters when that backend is asked for, and the error
then says what is missing. When "auto" ends on the unfused reference although a fused backend exists for that
kind of tensor, a warning says once, per reason, which backend declined and why.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass

import torch

from .ops.constant import constant_result

BACKEND_NAMES = ("reference", "triton", "cpp", "cuda")
FUSED_BACKENDS = ("triton", "cpp", "cuda")
_MODULES = {
    "reference": "swin_kernels.ops.reference_ops",
    "triton": "swin_kernels.ops.triton",
    "cpp": "swin_kernels.ops.cpp",
    "cuda": "swin_kernels.ops.cuda",
}
# "auto" tries these in order for tensors on each device type; the reference always can. On a GPU the Triton
# kernels come first: they accept every call the cuda kernels do and more (windows up to 576 tokens, fp64,
# attention dropout); the cuda kernels are the fallback where triton is missing, too old or declines a call. A
# backend that cannot run a call (not built, no kernel image for this GPU, dtype, shape, dropout) is passed over
# with its reason; `backend=` or SWIN_KERNELS_BACKEND forces one. The order is by coverage: no GPU has yet timed
# the two side by side (`make gpu-check` reports "triton against cuda"; where cuda is faster everywhere it runs,
# it should come first).
AUTO_ORDER = {"cuda": ("triton", "cuda", "reference"), "cpu": ("cpp", "reference")}
ENV_OVERRIDE = "SWIN_KERNELS_BACKEND"


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run this call; the message says why."""


class FallbackWarning(UserWarning):
    """'auto' runs the unfused reference for a call a fused backend declined."""


@dataclass(frozen=True)
class Request:
    """What a backend needs to know to say whether it can run a call."""

    op: str  # "attention", "partition" or "reverse"
    device: torch.device
    dtype: torch.dtype
    window: tuple[int, ...]  # (rows, columns), or (depth, rows, columns) for a volume
    head_dim: int | None = None
    dropout: bool = False

    @property
    def tokens(self) -> int:
        n = 1
        for m in self.window:
            n *= m
        return n

    def __str__(self) -> str:
        text = f"{self.op} on {self.device.type} {str(self.dtype).removeprefix('torch.')}, window {self.window}"
        if self.head_dim is not None:
            text += f", head_dim {self.head_dim}"
        return text + (", dropout" if self.dropout else "")


_LOADED: dict[str, tuple] = {}  # name -> (module or None, import error or None)


def _load(name: str):
    """The implementation module of a backend, or the reason it cannot be imported (imported once)."""
    if name not in _LOADED:
        try:
            _LOADED[name] = importlib.import_module(_MODULES[name]), None
        except Exception as error:  # a broken optional dependency must not break the package
            _LOADED[name] = None, f"{type(error).__name__}: {error}"
    return _LOADED[name]


def check_name(name: str) -> None:
    if name != "auto" and name not in _MODULES:
        raise ValueError(f"unknown backend {name!r}; choose from {', '.join(BACKEND_NAMES)} or 'auto'")


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run on this machine, or None when it can."""
    check_name(name)
    module, import_error = _load(name)
    if module is None:
        return f"cannot be imported ({import_error})"
    return module.unavailable_reason()


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine (the reference always can)."""
    return [name for name in BACKEND_NAMES if unavailable_reason(name) is None]


def reason(name: str, request: Request) -> str | None:
    """Why backend ``name`` cannot run ``request`` (None when it can)."""
    why = unavailable_reason(name)
    if why is None:
        why = _load(name)[0].unsupported_reason(request)
    return why


def resolve(backend: str | None, request: Request):
    """The implementation module that runs ``request``: the named backend, or the first that can for 'auto'.

    'auto' (or None) may be overridden by the SWIN_KERNELS_BACKEND environment variable (read on every call).
    """
    r = request
    window_d = r.window[0] if len(r.window) == 3 else 0  # 0: a 2-D map
    name = _resolve_name(backend, r.op, str(r.device), r.dtype, window_d, r.window[-2], r.window[-1], r.head_dim,
                         r.dropout)
    return _LOADED[name][0]


# (requested name, op, device, dtype, window, head_dim, dropout) -> (backend name, backends 'auto' passed over).
# A backend's answer for a kind of call does not change within a process (builds, devices and kernels are fixed
# once loaded), so each kind is decided once; choose() and explain() still ask every backend afresh.
_RESOLVED: dict[tuple, tuple[str, tuple]] = {}


@constant_result
def _resolve_name(backend, op, device, dtype, window_d, window_h, window_w, head_dim, dropout) -> str:
    """Name of the backend that runs the call: host-side logic that torch.compile treats as a constant.
    ``window_d`` is the window's depth for a volume, 0 for a map."""
    name = requested_name(backend)
    # fp32 attention plans depend on torch's TF32 switch (ops/triton), which a program may flip between calls
    tf32 = _fp32_precision() if dtype == torch.float32 else None
    key = (name, op, device, dtype, window_d, window_h, window_w, head_dim, dropout, tf32)
    window = (window_d, window_h, window_w) if window_d else (window_h, window_w)
    hit = _RESOLVED.get(key)
    if hit is None:
        request = Request(op, torch.device(device), dtype, window, head_dim, dropout)
        chosen, declined, why = _choose(name, request)
        if chosen is None:
            raise BackendUnavailableError(why)
        hit = _RESOLVED[key] = chosen, tuple(declined) if chosen == "reference" else ()
    if hit[1]:  # 'auto' fell back to the reference: warn once per reason (a no-op once warned)
        _warn_fallback(Request(op, torch.device(device), dtype, window, head_dim, dropout), hit[1])
    return hit[0]


_MATMUL_FP32_PRECISION = None  # torch.backends.cuda.matmul has the attribute (torch >= 2.9), found at the first call


def _fp32_precision():
    global _MATMUL_FP32_PRECISION
    if _MATMUL_FP32_PRECISION is None:
        _MATMUL_FP32_PRECISION = hasattr(torch.backends.cuda.matmul, "fp32_precision")
    return torch.backends.cuda.matmul.fp32_precision if _MATMUL_FP32_PRECISION else None


def requested_name(backend: str | None) -> str:
    """The backend a call asks for: ``backend``, or for 'auto'/None the SWIN_KERNELS_BACKEND override if set."""
    name = backend or "auto"
    if name == "auto":
        name = os.environ.get(ENV_OVERRIDE) or "auto"
    if name not in _MODULES and name != "auto":
        check_name(name)
    return name


def choose(backend: str | None, request: Request, warn: bool = True) -> tuple[str | None, str]:
    """(name, why): the backend that runs ``request`` and a sentence on the others, or (None, the error)."""
    name, declined, why = _choose(requested_name(backend), request)
    if name == "reference" and declined and warn:
        _warn_fallback(request, declined)
    return name, why


def _choose(name: str, request: Request) -> tuple[str | None, list, str]:
    """(backend or None, [(backend 'auto' passed over, why)], sentence) for a requested ``name``."""
    if name != "auto":
        why = reason(name, request)
        if why is not None:
            return None, [], f"{name}: {why}"
        return name, [], f"{name} was asked for"
    declined = []
    for candidate in AUTO_ORDER.get(request.device.type, ("reference",)):
        why = reason(candidate, request)
        if why is None:
            others = "; ".join(f"{n}: {w}" for n, w in declined)
            return candidate, declined, (f"auto picked {candidate}" + (f" ({others})" if others else ""))
        declined.append((candidate, why))
    return None, declined, "no backend can run this call:\n  " + "\n  ".join(f"{n}: {w}" for n, w in declined)


_WARNED: set[tuple[str, str]] = set()


def _warn_fallback(request: Request, declined) -> None:
    for name, why in declined:
        if (name, why) in _WARNED:
            continue
        _WARNED.add((name, why))
        warnings.warn(f"swin_kernels: the unfused reference runs {request} because {name} declined: {why}. "
                      "swin_kernels.explain(...) tells which backend runs a call, module or model.",
                      FallbackWarning, stacklevel=4)


def reasons(request: Request) -> dict[str, str | None]:
    """For every backend, why it cannot run ``request`` (None where it can)."""
    return {name: reason(name, request) for name in BACKEND_NAMES}
