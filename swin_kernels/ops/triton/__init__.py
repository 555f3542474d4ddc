"""The "triton" backend: single-pass fused shifted-window attention and fused roll+partition / reverse+roll.

On a GPU the kernels run on CUDA tensors; with TRITON_INTERPRET=1 (set before triton is imported) they run
in Triton's interpreter on CPU tensors, which is how they are tested without a GPU. The kernels are torch
operators (library.py), so torch.compile traces calls to them without graph breaks.
"""

from __future__ import annotations

import os

import torch

from ..constant import constant_result

try:
    import triton
except ImportError:  # the backend is optional
    _IMPORT_ERROR = "triton is not installed"
else:
    try:
        from triton import knobs  # noqa: F401  (triton >= 3.4, which the kernels are written for)
    except ImportError:
        _IMPORT_ERROR = f"triton {triton.__version__} is too old: the kernels need triton >= 3.4"
    else:
        _IMPORT_ERROR = None

ATTENTION_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _interpreting() -> bool:
    """Whether the kernels were built for Triton's interpreter (decided when they were first imported)."""
    from .configs import INTERPRET

    return INTERPRET


def unavailable_reason() -> str | None:
    if _IMPORT_ERROR is not None:
        return _IMPORT_ERROR
    from triton import knobs

    interpret_now = bool(knobs.runtime.interpret)  # the environment as it is now
    if not interpret_now and not torch.cuda.is_available():
        return "no CUDA device and TRITON_INTERPRET is not set"
    if interpret_now != _interpreting():
        return "TRITON_INTERPRET changed after the kernels were loaded (set it before triton is imported)"
    return None


def unsupported_reason(request) -> str | None:
    from .configs import MAX_HEAD_DIM, MAX_TOKENS

    if _interpreting():
        if request.device.type != "cpu":
            return f"under TRITON_INTERPRET=1 the kernels run on CPU tensors, got a {request.device.type} tensor"
    elif request.device.type != "cuda":
        return f"needs CUDA tensors, got a {request.device.type} tensor"
    if request.op != "attention":
        return None  # partition / reverse move data of any dtype and window
    if request.dtype not in ATTENTION_DTYPES:
        return f"attention supports float16, bfloat16, float32 and float64, got {request.dtype}"
    if request.tokens > MAX_TOKENS:
        return (f"attention supports windows of up to {MAX_TOKENS} tokens (e.g. 24x24 or 8x8x9), got "
                f"{'x'.join(str(m) for m in request.window)} ({request.tokens} tokens)")
    if request.head_dim is not None and request.head_dim > MAX_HEAD_DIM:
        return f"attention supports head_dim up to {MAX_HEAD_DIM}, got {request.head_dim}"
    if request.head_dim is not None:
        from .configs import attention_plan, device_family

        precision = fp32_precision() if request.dtype == torch.float32 else "ieee"
        plan = attention_plan(request.tokens, request.head_dim, request.dtype, precision,
                              family=device_family(request.device))
        if not plan.supported:
            return (f"{plan.path} attention with head_dim {request.head_dim} has no register-spill-free tiling "
                    "(the compile report's table); fp64 runs head_dim up to 64")
    return None


FP32_ENV = "SWIN_KERNELS_FP32"


@constant_result
def fp32_precision() -> str:
    """The dot-product precision of fp32 attention (configs.FP32_PRECISIONS), decided per call:

    1. ``SWIN_KERNELS_FP32=tf32x3|tf32|ieee`` when set: the library's own switch, and the only way to ask for
       "ieee" (exact fp32 products on the FMA units, the slowest);
    2. else "tf32" when torch allows TF32 for fp32 matmuls (``torch.backends.cuda.matmul.fp32_precision = "tf32"``,
       ``torch.set_float32_matmul_precision("high")``, or the legacy ``allow_tf32``);
    3. else "tf32x3": three TF32 tensor-core products per dot (a high part and its residual), fp32 accuracy.

    torch's "ieee" / "highest" is not read as a request for the FMA path: it is torch's default (what a program
    that never touched the switch reports on some versions), and 3xTF32 already gives fp32 accuracy.
    """
    chosen = os.environ.get(FP32_ENV)
    if chosen:
        from .configs import FP32_PRECISIONS

        chosen = chosen.strip().lower()
        if chosen not in FP32_PRECISIONS:
            raise ValueError(f"{FP32_ENV}={os.environ[FP32_ENV]!r}: expected one of {', '.join(FP32_PRECISIONS)}")
        return chosen
    return "tf32" if fp32_matmuls_use_tf32() else "tf32x3"


@constant_result
def fp32_matmuls_use_tf32() -> bool:
    """torch's switch for fp32 matmuls (``torch.backends.cuda.matmul.fp32_precision``, or the legacy
    ``allow_tf32`` on torch versions without it): the fp32 kernels follow it. Reading the legacy flag raises once
    the new API has been used, so the new one is read where it exists."""
    matmul = torch.backends.cuda.matmul
    precision = getattr(matmul, "fp32_precision", None)
    if precision is None:
        return bool(matmul.allow_tf32)
    return precision == "tf32"


def dropout_seed(device: torch.device) -> torch.Tensor:
    """A (1,) int64 Philox seed drawn on the device by torch's generator for it (torch.manual_seed /
    torch.cuda.manual_seed make dropout reproducible); no host synchronisation, capturable in a CUDA graph."""
    return torch.randint(0, 2**31 - 1, (1,), device=device, dtype=torch.int64)


# The ops take the geometry as the caller gives it (window and shift of 2 ints for a (B, H, W, ·) map, of 3 for a
# (B, D, H, W, ·) volume; reverse the spatial sizes), as the compiled library's ops do and the ONNX translation
# reads them; the launchers hand every geometry to the kernels in its 3-axis form (index_map.kernel_geometry).
def window_attention(qkv, pad_qkv, bias, num_heads, geometry, scale, dropout_p):
    from . import eager, library  # library registers the ops

    g = geometry
    seed = dropout_seed(qkv.device) if dropout_p > 0.0 else None
    precision = fp32_precision() if qkv.dtype == torch.float32 else "ieee"
    if eager.direct_call_allowed(qkv, pad_qkv, bias):  # a plain eager call: the launchers without the op around them
        with library._device_guard(qkv):
            return eager.attention(qkv, pad_qkv, bias, seed, num_heads, g, scale, dropout_p,
                                   library._plan(qkv, num_heads, g, precision))
    out, _, _ = torch.ops.swin_kernels_triton.attention_fwd(
        qkv, pad_qkv, bias, seed, num_heads, list(g.window), list(g.shift), g.roll_before_pad, scale, dropout_p,
        precision)
    return out


def window_partition(x, geometry):
    from . import library  # noqa: F401

    g = geometry
    return torch.ops.swin_kernels_triton.window_partition(x, list(g.window), list(g.shift), g.roll_before_pad)


def window_reverse(windows, geometry):
    from . import library  # noqa: F401

    g = geometry
    return torch.ops.swin_kernels_triton.window_reverse(windows, list(g.window), list(g.sizes), list(g.shift),
                                                       g.roll_before_pad)
