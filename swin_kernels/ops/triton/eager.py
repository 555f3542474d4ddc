"""Eager attention calls straight to the Triton launchers, without the torch.library operator around them.

The custom op (library.py) is what torch.compile, torch.export, ONNX export, ``torch.library.opcheck``, dispatch
modes and the profiler see. In a plain eager call it only adds host time: the dispatcher, the op's autograd wrapper
and the dynamo-disabled region around its implementation cost more than the launcher itself (benchmarks/
host_overhead.py), and on a GPU that host time is what late Swin stages and small batches wait for. So a call on
plain tensors, outside any tracing, mode or profiler, runs the same launchers directly: ``window_attention_forward``
when no gradient is needed, else an ``autograd.Function`` whose backward is the op's backward (the same kernels,
the same saved tensors, the same bits). Anything else goes through the op.
"""

from __future__ import annotations

import torch
from torch.nn import Parameter

from .attention_backward import window_attention_backward
from .attention_forward import window_attention_forward

_PLAIN_TYPES = (torch.Tensor, Parameter)


def _profiling() -> bool:
    from torch.autograd import profiler

    return bool(getattr(profiler, "_is_profiler_enabled", False))


def direct_call_allowed(*tensors) -> bool:
    """Whether an eager call may bypass the custom op: no compile / trace / export, no dispatch or function mode,
    no profiler, and every tensor a plain one (no subclass, no functorch wrapper)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or _profiling():
        return False
    if torch._C._len_torch_dispatch_stack() or torch._C._is_torch_function_mode_enabled():
        return False
    for t in tensors:
        if t is None:
            continue
        if type(t) not in _PLAIN_TYPES or torch._C._functorch.is_functorch_wrapped_tensor(t):
            return False
    return True


class _FusedAttention(torch.autograd.Function):
    """The custom op's forward and backward, called without the dispatcher."""

    @staticmethod
    def forward(ctx, qkv, pad_qkv, bias, seed, num_heads, geometry, scale, dropout_p, plan):
        out, lse, table = window_attention_forward(qkv, pad_qkv, bias, seed, num_heads, geometry, scale, dropout_p,
                                                   plan)
        ctx.save_for_backward(qkv, pad_qkv, bias, seed, out, lse, table)
        ctx.params = (num_heads, geometry, scale, dropout_p, plan)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        qkv, pad_qkv, bias, seed, out, lse, table = ctx.saved_tensors
        num_heads, geometry, scale, dropout_p, plan = ctx.params
        need_dpad = ctx.needs_input_grad[1] and pad_qkv is not None
        need_dbias = ctx.needs_input_grad[2] and bias is not None
        dqkv, dpad, dbias = window_attention_backward(grad_out.contiguous(), qkv, pad_qkv, bias, out, lse, table,
                                                      seed, num_heads, geometry, scale, dropout_p, plan, need_dpad,
                                                      need_dbias)
        return dqkv, dpad if need_dpad else None, dbias if need_dbias else None, None, None, None, None, None, None


def attention(qkv, pad_qkv, bias, seed, num_heads, geometry, scale, dropout_p, plan):
    """out (B, [D,] H, W, C) of a direct eager call (direct_call_allowed must hold)."""
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (qkv, pad_qkv, bias))
    if not needs_grad:
        return window_attention_forward(qkv, pad_qkv, bias, seed, num_heads, geometry, scale, dropout_p, plan)[0]
    return _FusedAttention.apply(qkv, pad_qkv, bias, seed, num_heads, geometry, scale, dropout_p, plan)
