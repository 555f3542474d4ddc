"""The "triton" backend: single-pass fused shifted-window attention and fused roll+partition / reverse+roll.

On a GPU the kernels run on CUDA tensors; with TRITON_INTERPRET=1 (set before triton is imported) they run
in Triton's interpreter on CPU tensors, which is how they are tested without a GPU.
"""

from __future__ import annotations

import torch

try:
    import triton  # noqa: F401
except ImportError:  # the backend is optional
    _IMPORT_ERROR = "triton is not installed"
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
    from .configs import MAX_HEAD_DIM, MAX_WINDOW

    if _interpreting():
        if request.device.type != "cpu":
            return (f"triton: under TRITON_INTERPRET=1 the kernels run on CPU tensors, "
                    f"got a {request.device.type} tensor")
    elif request.device.type != "cuda":
        return f"triton: needs CUDA tensors, got a {request.device.type} tensor"
    if request.op != "attention":
        return None  # partition / reverse move data of any dtype and window
    if request.dtype not in ATTENTION_DTYPES:
        return f"triton: attention supports float16, bfloat16, float32 and float64, got {request.dtype}"
    if request.window > MAX_WINDOW:
        return f"triton: attention supports windows up to {MAX_WINDOW} (N <= {MAX_WINDOW ** 2}), got {request.window}"
    if request.head_dim is not None and request.head_dim > MAX_HEAD_DIM:
        return f"triton: attention supports head_dim up to {MAX_HEAD_DIM}, got {request.head_dim}"
    return None


def window_attention(qkv, pad_qkv, bias, num_heads, window, shift, scale, dropout_p):
    from .autograd import WindowAttentionFunction

    return WindowAttentionFunction.apply(qkv, pad_qkv, bias, num_heads, window, shift, scale, dropout_p)


def window_partition(x, window, shift):
    from .autograd import WindowPartitionFunction

    return WindowPartitionFunction.apply(x, window, shift)


def window_reverse(windows, window, height, width, shift):
    from .autograd import WindowReverseFunction

    return WindowReverseFunction.apply(windows, window, height, width, shift)
