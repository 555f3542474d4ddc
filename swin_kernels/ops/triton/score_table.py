"""The additive score table: (bias + shift mask) / scale for each window class, pad keys at -inf.

The shift mask of a window depends only on whether it is in the last window row and/or column of the map
(the only windows that straddle regions, reference.shift_region_ids), so 4 classes cover every window of a
shifted map and 1 an unshifted one. Token r·Mw + c of a last-row window sits at rolled row Hp - Mh + r: region
1 + (r >= Mh - sh) when the rows are shifted; elsewhere region 0 (columns likewise). A table of
(classes, heads, Np, Np) with Np = padded N is built once per call; the attention kernels then add one unmasked
tile per block instead of gathering the bias and comparing region ids per element. The tile is the q kᵀ dot's
accumulator, so the table holds the terms divided by the attention scale: (q kᵀ + table)·scale·log2(e) is then
the base-2 score (tiles.score_block).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import configs
from .tiles import constant

SHIFT_MASK = tl.constexpr(-100.0)  # geometry.SHIFT_MASK_VALUE


@triton.jit
def _axis_region(position, in_last, window, shift):
    """Region of a token at ``position`` along one window axis: 0 outside the last window, else 1 or 2."""
    return in_last * tl.where(shift > 0, 1 + (position >= window - shift).to(tl.int32), 0)


@triton.jit
def score_table_kernel(bias_ptr, table_ptr, num_heads, shift_h, shift_w, inv_scale_hi, inv_scale_lo,
                       WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr, PADDED: tl.constexpr,
                       BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, HAS_BIAS: tl.constexpr):
    cls = tl.program_id(0)  # 2·(last window row) + (last window column)
    head = tl.program_id(1)
    N: tl.constexpr = WINDOW_H * WINDOW_W
    ty = table_ptr.dtype.element_ty
    inv_scale = constant(inv_scale_hi, inv_scale_lo, ty)  # fp64 tables get 1 / scale to ~2^-48
    i = tl.program_id(2) * BLOCK_I + tl.arange(0, BLOCK_I)  # query tokens
    j = tl.arange(0, BLOCK_J)  # key tokens (BLOCK_J: PADDED rounded up to a power of two)
    value = tl.zeros([BLOCK_I, BLOCK_J], ty)
    if HAS_BIAS:
        value += tl.load(bias_ptr + head * (N * N) + i[:, None] * N + j[None, :],
                         mask=(i[:, None] < N) & (j[None, :] < N), other=0.0).to(ty)
    last_row = cls // 2
    last_col = cls % 2
    region_i = _axis_region(i // WINDOW_W, last_row, WINDOW_H, shift_h) * 3 + \
        _axis_region(i % WINDOW_W, last_col, WINDOW_W, shift_w)
    region_j = _axis_region(j // WINDOW_W, last_row, WINDOW_H, shift_h) * 3 + \
        _axis_region(j % WINDOW_W, last_col, WINDOW_W, shift_w)
    value = tl.where(region_i[:, None] != region_j[None, :], value + SHIFT_MASK, value) * inv_scale
    value = tl.where(j[None, :] < N, value, float("-inf"))
    table = table_ptr + (cls * num_heads + head).to(tl.int64) * (PADDED * PADDED)
    tl.store(table + i[:, None] * PADDED + j[None, :], value, mask=(i[:, None] < PADDED) & (j[None, :] < PADDED))


def score_table(bias: torch.Tensor | None, acc_dtype: torch.dtype, num_heads: int, geometry, scale: float,
                plan: configs.AttentionPlan, device) -> torch.Tensor:
    """(classes, heads, Np, Np) in the accumulator dtype; classes = 4 when shifted, else 1."""
    g = geometry
    classes = 4 if g.shifted else 1
    table = torch.empty((classes, num_heads, plan.padded, plan.padded), dtype=acc_dtype, device=device)
    config = configs.SCORE_TABLE_CONFIG
    block_i = config.kwargs["BLOCK_I"]
    score_table_kernel[(classes, num_heads, triton.cdiv(plan.padded, block_i))](
        table if bias is None else bias, table, num_heads, *g.shift, *configs.split_float(1.0 / scale),
        WINDOW_H=g.window[0], WINDOW_W=g.window[1], PADDED=plan.padded, BLOCK_I=block_i,
        BLOCK_J=triton.next_power_of_2(plan.padded), HAS_BIAS=bias is not None, **config.launch_options())
    return table


def table_shape(num_heads: int, shifted: bool, plan: configs.AttentionPlan) -> tuple[int, int, int, int]:
    return (4 if shifted else 1, num_heads, plan.padded, plan.padded)
