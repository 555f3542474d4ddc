"""The Triton kernels as torch operators: ``torch.ops.swin_kernels_triton.*``.

Each kernel launcher is a ``torch.library.custom_op`` with a fake (shape-only) implementation and an autograd
formula, like the compiled library's ops (ops/_ext.py). torch.compile therefore sees one opaque node per call
(fullgraph traces, no graph breaks) and inductor calls the kernels as they are; ``torch.library.opcheck`` checks
the registrations. Nothing inside an op synchronises with the host: the dropout seed arrives as a device tensor,
the scalars as kernel arguments, and every launch configuration is fixed per plan (configs.py).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Optional

import torch
from torch import Tensor

from ...geometry import WindowGeometry
from . import configs
from .attention_backward import window_attention_backward
from .attention_forward import lse_shape, window_attention_forward
from .partition import partition_forward, reverse_forward
from .score_table import table_shape

NAMESPACE = "swin_kernels_triton"


def _device_guard(t: Tensor):
    """Launch on the tensor's GPU (Triton launches on the current device's current stream)."""
    return torch.cuda.device(t.device) if t.is_cuda else nullcontext()


def _geometry(sizes, window, shift, roll_before_pad) -> WindowGeometry:
    """The geometry of spatial ``sizes`` ((H, W) of a map, (D, H, W) of a volume); window and shift: one entry per
    spatial axis."""
    sizes = tuple(sizes)
    if len(sizes) not in (2, 3) or len(window) != len(sizes) or len(shift) != len(sizes):
        raise ValueError(f"triton: window {list(window)} and shift {list(shift)} need one entry per spatial axis of "
                         f"{'x'.join(str(n) for n in sizes)} (a (B, H, W, C) map or a (B, D, H, W, C) volume)")
    return WindowGeometry.of(sizes, tuple(window), tuple(shift), roll_before_pad)


def _plan(qkv: Tensor, num_heads: int, geometry: WindowGeometry, fp32_precision: str) -> configs.AttentionPlan:
    """``fp32_precision``: the dot precision of fp32 inputs (configs.FP32_PRECISIONS; other dtypes ignore it)."""
    head_dim = qkv.shape[-1] // (3 * num_heads)
    volume = geometry.window3[0] > 1  # the kernels' 3-D index arithmetic (a window of depth 1 takes the 2-D one)
    family = configs.device_family(qkv.device)  # the tile table's section for this GPU
    if isinstance(head_dim, int):
        return configs.cached_attention_plan(geometry.tokens, head_dim, qkv.dtype, fp32_precision, volume, family)
    return configs.attention_plan(geometry.tokens, head_dim, qkv.dtype, fp32_precision, volume, family)  # symbolic


# ------------------------------------------------------------------------------------------------ attention
@torch.library.custom_op(f"{NAMESPACE}::attention_fwd", mutates_args=())
def attention_fwd(qkv: Tensor, pad_qkv: Optional[Tensor], bias: Optional[Tensor], seed: Optional[Tensor],
                  num_heads: int, window: list[int], shift: list[int], roll_before_pad: bool, scale: float,
                  dropout_p: float, fp32_precision: str) -> tuple[Tensor, Tensor, Tensor]:
    """(out (B, [D,] H, W, C), lse (B·nW·heads, Np), score table); ``seed``: (1,) int64 Philox seed when
    dropout_p > 0; ``fp32_precision``: "tf32x3", "tf32" or "ieee" dot products for fp32 inputs (the caller's
    fp32_precision(), fixed in a traced graph)."""
    g = _geometry(qkv.shape[1:-1], window, shift, roll_before_pad)
    with _device_guard(qkv):
        return window_attention_forward(qkv, pad_qkv, bias, seed, num_heads, g, scale, dropout_p,
                                        _plan(qkv, num_heads, g, fp32_precision))


@attention_fwd.register_fake
def _(qkv, pad_qkv, bias, seed, num_heads, window, shift, roll_before_pad, scale, dropout_p, fp32_precision):
    batch, c3 = qkv.shape[0], qkv.shape[-1]
    g = _geometry(qkv.shape[1:-1], window, shift, roll_before_pad)
    plan = _plan(qkv, num_heads, g, fp32_precision)
    acc = configs.accumulator_dtype(qkv.dtype)
    return (qkv.new_empty((*qkv.shape[:-1], c3 // 3)),
            qkv.new_empty(lse_shape(batch, g, num_heads, plan), dtype=acc),
            qkv.new_empty(table_shape(num_heads, g, plan), dtype=acc))


@torch.library.custom_op(f"{NAMESPACE}::attention_bwd", mutates_args=())
def attention_bwd(grad_out: Tensor, qkv: Tensor, pad_qkv: Optional[Tensor], bias: Optional[Tensor], out: Tensor,
                  lse: Tensor, table: Tensor, seed: Optional[Tensor], num_heads: int, window: list[int],
                  shift: list[int], roll_before_pad: bool, scale: float, dropout_p: float, fp32_precision: str,
                  need_dpad: bool, need_dbias: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(d qkv, d pad_qkv, d bias); the last two are empty when not asked for (or their input is None)."""
    g = _geometry(qkv.shape[1:-1], window, shift, roll_before_pad)
    with _device_guard(qkv):
        dqkv, dpad, dbias = window_attention_backward(
            grad_out, qkv, pad_qkv, bias, out, lse, table, seed, num_heads, g, scale, dropout_p,
            _plan(qkv, num_heads, g, fp32_precision), need_dpad, need_dbias)
    return dqkv, qkv.new_empty(0) if dpad is None else dpad, qkv.new_empty(0) if dbias is None else dbias


@attention_bwd.register_fake
def _(grad_out, qkv, pad_qkv, bias, out, lse, table, seed, num_heads, window, shift, roll_before_pad, scale,
      dropout_p, fp32_precision, need_dpad, need_dbias):
    dpad = pad_qkv.new_empty(pad_qkv.shape) if need_dpad and pad_qkv is not None else qkv.new_empty(0)
    dbias = bias.new_empty(bias.shape) if need_dbias and bias is not None else qkv.new_empty(0)
    return torch.empty_like(qkv), dpad, dbias


def _attention_setup(ctx, inputs, output):
    qkv, pad_qkv, bias, seed, num_heads, window, shift, roll_before_pad, scale, dropout_p, fp32_precision = inputs
    out, lse, table = output
    ctx.mark_non_differentiable(lse, table)
    ctx.save_for_backward(qkv, pad_qkv, bias, seed, out, lse, table)
    ctx.params = (num_heads, window, shift, roll_before_pad, scale, dropout_p, fp32_precision)


def _attention_backward(ctx, grad_out, _grad_lse, _grad_table):
    qkv, pad_qkv, bias, seed, out, lse, table = ctx.saved_tensors
    need_dpad = ctx.needs_input_grad[1] and pad_qkv is not None
    need_dbias = ctx.needs_input_grad[2] and bias is not None
    dqkv, dpad, dbias = attention_bwd(grad_out.contiguous(), qkv, pad_qkv, bias, out, lse, table, seed, *ctx.params,
                                      need_dpad, need_dbias)
    return (dqkv, dpad if need_dpad else None, dbias if need_dbias else None) + (None,) * 8


attention_fwd.register_autograd(_attention_backward, setup_context=_attention_setup)


# ---------------------------------------------------------------------------------------- partition / reverse
@torch.library.custom_op(f"{NAMESPACE}::window_partition", mutates_args=())
def window_partition(x: Tensor, window: list[int], shift: list[int], roll_before_pad: bool) -> Tensor:
    """(B, [D,] H, W, C) -> (B·nW, N, C)."""
    with _device_guard(x):
        return partition_forward(x, _geometry(x.shape[1:-1], window, shift, roll_before_pad))


@window_partition.register_fake
def _(x, window, shift, roll_before_pad):
    g = _geometry(x.shape[1:-1], window, shift, roll_before_pad)
    return x.new_empty((x.shape[0] * g.num_windows, g.tokens, x.shape[-1]))


@torch.library.custom_op(f"{NAMESPACE}::window_reverse", mutates_args=())
def window_reverse(windows: Tensor, window: list[int], sizes: list[int], shift: list[int],
                   roll_before_pad: bool) -> Tensor:
    """(B·nW, N, C) -> (B, [D,] H, W, C); ``sizes``: the spatial sizes ([D,] H, W)."""
    with _device_guard(windows):
        return reverse_forward(windows, _geometry(sizes, window, shift, roll_before_pad))


@window_reverse.register_fake
def _(windows, window, sizes, shift, roll_before_pad):
    g = _geometry(sizes, window, shift, roll_before_pad)
    return windows.new_empty((windows.shape[0] // g.num_windows, *sizes, windows.shape[-1]))


def _partition_setup(ctx, inputs, output):
    x, window, shift, roll_before_pad = inputs
    ctx.args = (window, list(x.shape[1:-1]), shift, roll_before_pad)


def _partition_backward(ctx, grad):
    # a gather that drops the zero padding: its gradient is the scatter back
    return window_reverse(grad.contiguous(), *ctx.args), None, None, None


def _reverse_setup(ctx, inputs, output):
    _, window, _, shift, roll_before_pad = inputs
    ctx.args = (window, shift, roll_before_pad)


def _reverse_backward(ctx, grad):
    # padded tokens were cropped, so their gradient is zero: what window_partition fills them with
    return window_partition(grad.contiguous(), *ctx.args), None, None, None, None


window_partition.register_autograd(_partition_backward, setup_context=_partition_setup)
window_reverse.register_autograd(_reverse_backward, setup_context=_reverse_setup)
