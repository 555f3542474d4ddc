"""ONNX translations of the fused ops, from standard ONNX operators (onnxscript, for the dynamo exporter).

Each op is translated into the reference math: the pad / roll / partition of a (B, H, W, ·) map is one Gather
through a constant index map (padded tokens read an appended zero row, plus ``pad_qkv`` for attention), the
attention is MatMul + bias + shift mask + Softmax per window and head, and the reverse / roll back / crop is a
Gather through the inverse map. The index maps and masks come from ``swin_kernels.reference`` for the traced map
size: H and W (and D of a (B, D, H, W, ·) volume) must be static in the exported graph (the batch may be dynamic).

The attention ops also return what only their backward reads (the log-sum-exp; the Triton op's score table). An
exported inference graph never reads them: the log-sum-exp is computed, the score table is an empty tensor.
Importing this module imports onnxscript; ``swin_kernels.export`` loads it only when an export needs it.
"""

from __future__ import annotations

from typing import Sequence, TypeVar, Union

import numpy as np
import onnx_ir as ir
import torch
from onnxscript import BFLOAT16, DOUBLE, FLOAT, FLOAT16
from onnxscript import opset18 as op

from .. import reference
from ..geometry import WindowGeometry

TFloat = TypeVar("TFloat", bound=Union[FLOAT16, FLOAT, DOUBLE, BFLOAT16])  # noqa: UP007


def _static_size(value, what: str) -> int:
    if not isinstance(value, int):
        raise ValueError(f"swin_kernels' ONNX translation needs a static {what} (got {value!r}): export with a "
                         "fixed image size (dynamic_shapes may leave only the batch dynamic)")
    return value


def _index_maps(g: WindowGeometry):
    """(source, is_pad, inverse, mask): for each of the nW·N window tokens its pixel in the flattened H·W map
    (H·W: a padded token), whether it is padding, for each pixel its window token, and the (nW, 1, N, N) shift
    mask (None unshifted)."""
    count = _pixels(g)
    pixels = torch.arange(count, dtype=torch.float64).reshape(1, *g.sizes, 1)
    filled = reference.pad_and_roll(pixels, g, torch.tensor([-1.0], dtype=torch.float64))
    source = reference.partition_windows(filled, g.window).reshape(-1).to(torch.int64)
    is_pad = source < 0
    source = torch.where(is_pad, count, source)
    inverse = torch.empty(count, dtype=torch.int64)
    real = torch.nonzero(~is_pad).reshape(-1)
    inverse[source[real]] = real
    mask = reference.shift_attention_mask(g, dtype=torch.float64)
    return source.numpy(), is_pad.numpy(), inverse.numpy(), None if mask is None else mask[:, None].numpy()


def _pixels(g: WindowGeometry) -> int:
    count = 1
    for n in g.sizes:
        count *= n
    return count


def _geometry(x_shape, window, shift, roll_before_pad) -> WindowGeometry:
    """The geometry of a traced (B, [D,] H, W, ·) input, its spatial sizes required static."""
    names = ("depth", "height", "width")[-(len(x_shape) - 2):]
    sizes = [_static_size(n, f"feature-map {name}") for n, name in zip(x_shape[1:-1], names)]
    return WindowGeometry.of(sizes, tuple(window), tuple(shift), bool(roll_before_pad))


def _const(array: np.ndarray, dtype: ir.DataType | None = None):
    if dtype is not None:
        array = array.astype(dtype.numpy())
    return op.Constant(value=ir.tensor(array))


def _ints(values):
    return op.Constant(value=ir.tensor(np.asarray(values, dtype=np.int64)))


def _gather_windows(x, g: WindowGeometry, channels: int):
    """(B, H, W, c) -> (B, nW·N, c) window tokens (padded ones zero), and the index maps."""
    maps = _index_maps(g)
    flat = op.Reshape(x, _ints([0, _pixels(g), channels]))
    flat = op.Pad(flat, _ints([0, 0, 0, 0, 1, 0]))  # one zero row: what padded tokens read
    return op.Gather(flat, _const(maps[0]), axis=1), maps


def _scatter_back(tokens, inverse: np.ndarray, g: WindowGeometry, channels: int):
    """(B, nW·N, c) -> (B, H, W, c): each pixel from its window token (rolled back, padding cropped)."""
    return op.Reshape(op.Gather(tokens, _const(inverse), axis=1), _ints([-1, *g.sizes, channels]))


def _attention(qkv, pad_qkv, bias, num_heads, window, shift, roll_before_pad, scale):
    c3 = qkv.shape[-1]
    g = _geometry(qkv.shape, window, shift, roll_before_pad)
    c, n = c3 // 3, g.tokens
    dtype = qkv.dtype
    tokens, (_, is_pad, inverse, mask) = _gather_windows(qkv, g, c3)
    if pad_qkv is not None and is_pad.any():
        tokens = op.Add(tokens, op.Mul(_const(is_pad[:, None], dtype), pad_qkv))
    x = op.Reshape(tokens, _ints([-1, g.num_windows, n, 3, num_heads, c // num_heads]))
    x = op.Transpose(x, perm=[3, 0, 1, 4, 2, 5])  # (3, B, nW, heads, N, d)
    q, k, v = (op.Gather(x, _ints(i), axis=0) for i in range(3))
    # half types: scores and softmax in fp32, as the kernels and the reference do
    wide = ir.DataType.FLOAT if dtype in (ir.DataType.FLOAT16, ir.DataType.BFLOAT16) else dtype
    if wide != dtype:
        q, k = op.Cast(q, to=wide), op.Cast(k, to=wide)
    scores = op.MatMul(op.Mul(q, _const(np.array(scale), wide)), op.Transpose(k, perm=[0, 1, 2, 4, 3]))
    if bias is not None:
        scores = op.Add(scores, op.Cast(bias, to=wide) if wide != dtype else bias)
    if mask is not None:
        scores = op.Add(scores, _const(mask, wide))
    lse = op.Reshape(op.ReduceLogSumExp(scores, _ints([-1]), keepdims=0), _ints([-1, num_heads, n]))
    probs = op.Softmax(scores, axis=-1)
    if wide != dtype:
        probs = op.Cast(probs, to=dtype)
    out = op.Reshape(op.Transpose(op.MatMul(probs, v), perm=[0, 1, 3, 2, 4]), _ints([0, g.num_windows * n, c]))
    return _scatter_back(out, inverse, g, c), lse


def window_attention_fwd(qkv: TFloat, pad_qkv: TFloat | None, bias: TFloat | None, num_heads: int,
                         window: Sequence[int], shift: Sequence[int], roll_before_pad: bool,
                         scale: float) -> tuple[TFloat, TFloat]:
    """swin_kernels::window_attention_fwd -> (out (B, H, W, C), lse (B·nW, heads, N))."""
    return _attention(qkv, pad_qkv, bias, num_heads, window, shift, roll_before_pad, scale)


def triton_attention_fwd(qkv: TFloat, pad_qkv: TFloat | None, bias: TFloat | None, seed: TFloat | None,
                         num_heads: int, window: Sequence[int], shift: Sequence[int], roll_before_pad: bool,
                         scale: float, dropout_p: float, fp32_precision: str) -> tuple[TFloat, TFloat, TFloat]:
    """swin_kernels_triton::attention_fwd -> (out, lse, an empty score table); no dropout (eval mode)."""
    if dropout_p != 0.0:
        raise ValueError(f"swin_kernels' ONNX translation has no attention dropout (dropout_p={dropout_p}): export "
                         "the model in eval mode")
    out, lse = _attention(qkv, pad_qkv, bias, num_heads, window, shift, roll_before_pad, scale)
    table = op.ConstantOfShape(_ints([0]), value=ir.tensor(np.zeros(1, dtype=np.float32)))
    return out, lse, table


def window_partition(x: TFloat, window: Sequence[int], shift: Sequence[int], roll_before_pad: bool) -> TFloat:
    """(B, H, W, C) -> (B·nW, N, C), padded tokens zero."""
    c = x.shape[-1]
    g = _geometry(x.shape, window, shift, roll_before_pad)
    tokens, _ = _gather_windows(x, g, c)
    return op.Reshape(tokens, _ints([-1, g.tokens, c]))


def window_reverse(windows: TFloat, window: Sequence[int], sizes: Sequence[int], shift: Sequence[int],
                   roll_before_pad: bool) -> TFloat:
    """(B·nW, N, C) -> (B, [D,] H, W, C)."""
    c = windows.shape[-1]
    g = _geometry((None, *sizes, None), window, shift, roll_before_pad)
    inverse = _index_maps(g)[2]
    tokens = op.Reshape(windows, _ints([-1, g.num_windows * g.tokens, c]))
    return _scatter_back(tokens, inverse, g, c)
