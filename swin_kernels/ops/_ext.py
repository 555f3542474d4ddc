"""The compiled operator library ``swin_kernels._C``: loading, fake implementations and autograd formulas.

Importing ``swin_kernels._C`` registers the ops ``torch.ops.swin_kernels.*`` (schemas in csrc/swin_kernels.cpp,
CPU kernels in csrc/cpu, CUDA kernels in csrc/cuda). This module adds what the C++ side does not: a fake
implementation of every op (shapes only, so ``torch.compile`` traces through without graph breaks) and the
autograd formulas (the backward of the attention is an op too; partition and reverse are each other's backward).
When the library is missing, ``unavailable_reason()`` says so and nothing is registered.
"""

from __future__ import annotations

import importlib

import torch

DISABLE_ENV = "SWIN_KERNELS_DISABLE_EXTENSION"  # "1": behave as if the extension were not built (tests use it)


def _load() -> str | None:
    import os

    if os.environ.get(DISABLE_ENV, "0") == "1":
        return f"disabled by {DISABLE_ENV}=1"
    try:
        importlib.import_module("swin_kernels._C")
    except Exception as error:  # not built, or built against another torch
        return f"{type(error).__name__}: {error}"
    return None


_LOAD_ERROR = _load()


def unavailable_reason() -> str | None:
    """Why the compiled library cannot be used, or None when it is loaded."""
    if _LOAD_ERROR is None:
        return None
    return (f"the compiled extension swin_kernels._C is not available ({_LOAD_ERROR}); build it with "
            "`pip install --no-build-isolation --no-deps -e .` (needs a C++20 compiler; see setup.py)")


def has_kernel(op: str, dispatch_key: str) -> bool:
    """Whether op ``swin_kernels::<op>`` has a kernel for ``dispatch_key`` ("CPU", "CUDA")."""
    return _LOAD_ERROR is None and torch._C._dispatch_has_kernel_for_dispatch_key(f"swin_kernels::{op}", dispatch_key)


def lse_dtype(dtype: torch.dtype) -> torch.dtype:
    """The log-sum-exp is kept in fp32 for half types, in the input dtype otherwise."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _windows(sizes, window):
    """Number of windows of a map or volume of spatial ``sizes`` (works on SymInts)."""
    count = 1
    for size, m in zip(sizes, window):
        count = count * ((size + m - 1) // m)
    return count


def _tokens(window) -> int:
    count = 1
    for m in window:
        count *= m
    return count


# ------------------------------------------------------------------------------------ backend entry points
def window_attention(qkv, pad_qkv, bias, num_heads, geometry, scale, dropout_p):
    if dropout_p > 0.0:
        raise ValueError(f"the compiled kernels have no attention dropout (dropout_p={dropout_p})")
    g = geometry
    out, _ = torch.ops.swin_kernels.window_attention_fwd(qkv, pad_qkv, bias, num_heads, list(g.window),
                                                         list(g.shift), g.roll_before_pad, scale)
    return out


def window_partition(x, geometry):
    g = geometry
    return torch.ops.swin_kernels.window_partition(x, list(g.window), list(g.shift), g.roll_before_pad)


def window_reverse(windows, geometry):
    g = geometry
    return torch.ops.swin_kernels.window_reverse(windows, list(g.window), list(g.sizes), list(g.shift),
                                                 g.roll_before_pad)


# ---------------------------------------------------------------------------------------------- fakes
def _fake_attention_fwd(qkv, pad_qkv, bias, num_heads, window, shift, roll_before_pad, scale):
    out = qkv.new_empty((*qkv.shape[:-1], qkv.shape[-1] // 3))
    lse = qkv.new_empty((qkv.shape[0] * _windows(qkv.shape[1:-1], window), num_heads, _tokens(window)),
                        dtype=lse_dtype(qkv.dtype))
    return out, lse


def _fake_attention_bwd(grad_out, qkv, pad_qkv, bias, lse, num_heads, window, shift, roll_before_pad, scale):
    n = _tokens(window)
    return torch.empty_like(qkv), qkv.new_empty((qkv.shape[-1],)), qkv.new_empty((num_heads, n, n))


def _fake_partition(x, window, shift, roll_before_pad):
    return x.new_empty((x.shape[0] * _windows(x.shape[1:-1], window), _tokens(window), x.shape[-1]))


def _fake_reverse(windows, window, sizes, shift, roll_before_pad):
    return windows.new_empty((windows.shape[0] // _windows(sizes, window), *sizes, windows.shape[-1]))


# -------------------------------------------------------------------------------------------- autograd
def _attention_setup(ctx, inputs, output):
    qkv, pad_qkv, bias, num_heads, window, shift, roll_before_pad, scale = inputs
    out, lse = output
    ctx.mark_non_differentiable(lse)
    ctx.save_for_backward(qkv, pad_qkv, bias, lse)  # not out: the backward recomputes what it needs
    ctx.params = (num_heads, window, shift, roll_before_pad, scale)


def _attention_backward(ctx, grad_out, _grad_lse):
    qkv, pad_qkv, bias, lse = ctx.saved_tensors
    grad_qkv, grad_pad, grad_bias = torch.ops.swin_kernels.window_attention_bwd(
        grad_out.contiguous(), qkv, pad_qkv, bias, lse, *ctx.params)
    return (grad_qkv, None if pad_qkv is None else grad_pad, None if bias is None else grad_bias,
            None, None, None, None, None)


def _partition_setup(ctx, inputs, output):
    x, window, shift, roll_before_pad = inputs
    ctx.geometry = (window, list(x.shape[1:-1]), shift, roll_before_pad)


def _partition_backward(ctx, grad):
    # The gradient of a gather that drops the zero padding is the scatter back: window_reverse.
    return torch.ops.swin_kernels.window_reverse(grad.contiguous(), *ctx.geometry), None, None, None


def _reverse_setup(ctx, inputs, output):
    _, window, _, shift, roll_before_pad = inputs
    ctx.geometry = (window, shift, roll_before_pad)


def _reverse_backward(ctx, grad):
    # Padded tokens were cropped, so their gradient is zero: exactly what window_partition fills them with.
    return torch.ops.swin_kernels.window_partition(grad.contiguous(), *ctx.geometry), None, None, None, None


def _register() -> None:
    fakes = {
        "window_attention_fwd": _fake_attention_fwd,
        "window_attention_bwd": _fake_attention_bwd,
        "window_partition": _fake_partition,
        "window_reverse": _fake_reverse,
    }
    for op, fake in fakes.items():
        torch.library.register_fake(f"swin_kernels::{op}", fake)
    torch.library.register_autograd("swin_kernels::window_attention_fwd", _attention_backward,
                                    setup_context=_attention_setup)
    torch.library.register_autograd("swin_kernels::window_partition", _partition_backward,
                                    setup_context=_partition_setup)
    torch.library.register_autograd("swin_kernels::window_reverse", _reverse_backward, setup_context=_reverse_setup)


if _LOAD_ERROR is None:
    _register()
