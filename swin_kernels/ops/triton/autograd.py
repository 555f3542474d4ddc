"""autograd.Functions tying the Triton kernels together (launched on the inputs' device and current stream)."""

from __future__ import annotations

import torch

from . import configs
from .attention_backward import window_attention_backward
from .attention_forward import window_attention_forward
from .partition import partition_forward, reverse_forward


def draw_dropout_seed() -> int:
    """A Philox seed from torch's default CPU generator, so torch.manual_seed makes dropout reproducible."""
    return int(torch.randint(0, 2**31 - 1, (1,)).item())


class WindowAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv, pad_qkv, bias, num_heads, window, shift, scale, dropout_p):
        seed = draw_dropout_seed() if dropout_p > 0.0 else 0
        plan = configs.attention_plan(window, qkv.shape[-1] // (3 * num_heads), qkv.dtype)
        with torch.cuda.device_of(qkv):
            out, lse, table = window_attention_forward(qkv, pad_qkv, bias, num_heads, window, shift, scale,
                                                       dropout_p, seed, plan)
        ctx.save_for_backward(qkv, pad_qkv, bias, out, lse, table)
        ctx.args = (num_heads, window, shift, scale, dropout_p, seed, plan)
        return out

    @staticmethod
    def backward(ctx, dout):
        qkv, pad_qkv, bias, out, lse, table = ctx.saved_tensors
        num_heads, window, shift, scale, dropout_p, seed, plan = ctx.args
        with torch.cuda.device_of(qkv):
            dqkv, dpad, dbias = window_attention_backward(
                dout.contiguous(), qkv, pad_qkv, bias, out, lse, table, num_heads, window, shift, scale, dropout_p,
                seed, plan, need_dpad=ctx.needs_input_grad[1], need_dbias=ctx.needs_input_grad[2])
        return dqkv, dpad, dbias, None, None, None, None, None


class WindowPartitionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, window, shift):
        ctx.args = (window, x.shape[1], x.shape[2], shift)
        with torch.cuda.device_of(x):
            return partition_forward(x, window, shift)

    @staticmethod
    def backward(ctx, grad):
        window, height, width, shift = ctx.args
        with torch.cuda.device_of(grad):
            return reverse_forward(grad.contiguous(), window, height, width, shift), None, None


class WindowReverseFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, windows, window, height, width, shift):
        ctx.args = (window, shift)
        with torch.cuda.device_of(windows):
            return reverse_forward(windows, window, height, width, shift)

    @staticmethod
    def backward(ctx, grad):
        window, shift = ctx.args
        with torch.cuda.device_of(grad):
            return partition_forward(grad.contiguous(), window, shift), None, None, None, None
