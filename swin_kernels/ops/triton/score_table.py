"""The additive score table: (bias + shift mask) / scale for each window class, pad keys at -inf.

The shift mask of a window depends only on whether it is in the last window row and/or column of the map (and the
last window plane of a volume): the only windows that straddle regions (reference.shift_region_ids). So 4 classes
cover every window of a shifted map, 8 every window of a shifted volume, and 1 an unshifted input. Token r·Mw + c
of a last-row window sits at rolled row Hp - Mh + r: region 1 + (r >= Mh - sh) when the rows are shifted; elsewhere
region 0 (columns and planes likewise; region id (rd·3 + rh)·3 + rw). A table of (classes, heads, Np, Np) with
Np = padded N is built once per call; the attention kernels then add one unmasked tile per block instead of
gathering the bias and comparing region ids per element. The tile is the q kᵀ dot's accumulator, so the table holds
the terms divided by the attention scale: (q kᵀ + table)·scale·log2(e) is then the base-2 score
(tiles.score_block).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from . import configs
from .index_map import window_sizes
from .tiles import constant

SHIFT_MASK = tl.constexpr(-100.0)  # geometry.SHIFT_MASK_VALUE
TILE_ELEMENTS = 4096  # BLOCK_I x BLOCK_J of one program: BLOCK_I shrinks as the key side grows


@triton.jit
def _axis_region(position, in_last, window, shift):
    """Region of a token at ``position`` along one window axis: 0 outside the last window, else 1 or 2."""
    return in_last * tl.where(shift > 0, 1 + (position >= window - shift).to(tl.int32), 0)


@triton.jit
def score_table_kernel(bias_ptr, table_ptr, num_heads, shift_h, shift_w, inv_scale_hi, inv_scale_lo, shift_d,
                       WINDOW_D: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr,
                       PADDED: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, HAS_BIAS: tl.constexpr):
    cls = tl.program_id(0)  # 2·(last window row) + (last window column), + 4·(last window plane) in 3-D
    head = tl.program_id(1)
    PLANE: tl.constexpr = WINDOW_H * WINDOW_W
    N: tl.constexpr = WINDOW_D * PLANE
    ty = table_ptr.dtype.element_ty
    inv_scale = constant(inv_scale_hi, inv_scale_lo, ty)  # fp64 tables get 1 / scale to ~2^-48
    i = tl.program_id(2) * BLOCK_I + tl.arange(0, BLOCK_I)  # query tokens
    j = tl.arange(0, BLOCK_J)  # key tokens (BLOCK_J: PADDED rounded up to a power of two)
    value = tl.zeros([BLOCK_I, BLOCK_J], ty)
    if HAS_BIAS:
        value += tl.load(bias_ptr + head * (N * N) + i[:, None] * N + j[None, :],
                         mask=(i[:, None] < N) & (j[None, :] < N), other=0.0).to(ty)
    if WINDOW_D == 1:
        last_row = cls // 2
        last_col = cls % 2
        region_i = _axis_region(i // WINDOW_W, last_row, WINDOW_H, shift_h) * 3 + \
            _axis_region(i % WINDOW_W, last_col, WINDOW_W, shift_w)
        region_j = _axis_region(j // WINDOW_W, last_row, WINDOW_H, shift_h) * 3 + \
            _axis_region(j % WINDOW_W, last_col, WINDOW_W, shift_w)
    else:
        last_plane = cls // 4
        last_row = (cls // 2) % 2
        last_col = cls % 2
        region_i = (_axis_region(i // PLANE, last_plane, WINDOW_D, shift_d) * 3
                    + _axis_region((i % PLANE) // WINDOW_W, last_row, WINDOW_H, shift_h)) * 3 + \
            _axis_region(i % WINDOW_W, last_col, WINDOW_W, shift_w)
        region_j = (_axis_region(j // PLANE, last_plane, WINDOW_D, shift_d) * 3
                    + _axis_region((j % PLANE) // WINDOW_W, last_row, WINDOW_H, shift_h)) * 3 + \
            _axis_region(j % WINDOW_W, last_col, WINDOW_W, shift_w)
    value = tl.where(region_i[:, None] != region_j[None, :], value + SHIFT_MASK, value) * inv_scale
    value = tl.where(j[None, :] < N, value, float("-inf"))
    table = table_ptr + (cls * num_heads + head).to(tl.int64) * (PADDED * PADDED)
    tl.store(table + i[:, None] * PADDED + j[None, :], value, mask=(i[:, None] < PADDED) & (j[None, :] < PADDED))


def table_classes(geometry) -> int:
    """1 unshifted; shifted: 4 (last window row, last window column), 8 with a windowed depth (and last plane)."""
    if not geometry.shifted:
        return 1
    return 4 if geometry.window3[0] == 1 else 8


def table_blocks(padded: int) -> tuple[int, int]:
    """(BLOCK_I, BLOCK_J): all keys of a row (a power of two) and as many query rows as TILE_ELEMENTS allows."""
    block_j = configs.next_power_of_2(padded)
    return max(1, min(configs.SCORE_TABLE_CONFIG.kwargs["BLOCK_I"], TILE_ELEMENTS // block_j)), block_j


@functools.lru_cache(maxsize=512)
def _table_launch(classes: int, num_heads: int, geometry, scale: float, plan: configs.AttentionPlan):
    """(grid, run-time scalars, constexprs and launch options) of one kind of score-table launch."""
    block_i, block_j = table_blocks(plan.padded)
    shift_d, shift_h, shift_w = geometry.shift3
    constants = dict(**window_sizes(geometry), PADDED=plan.padded, BLOCK_I=block_i, BLOCK_J=block_j,
                     **configs.SCORE_TABLE_CONFIG.launch_options())
    return ((classes, num_heads, triton.cdiv(plan.padded, block_i)),  # the depth's shift comes last
            (num_heads, shift_h, shift_w, *configs.split_float(1.0 / scale), shift_d), constants)


def score_table(bias: torch.Tensor | None, acc_dtype: torch.dtype, num_heads: int, geometry, scale: float,
                plan: configs.AttentionPlan, device) -> torch.Tensor:
    """(classes, heads, Np, Np) in the accumulator dtype; classes = table_classes(geometry)."""
    classes = table_classes(geometry)
    table = torch.empty((classes, num_heads, plan.padded, plan.padded), dtype=acc_dtype, device=device)
    grid, scalars, constants = _table_launch(classes, num_heads, geometry, scale, plan)
    score_table_kernel[grid](table if bias is None else bias, table, *scalars, HAS_BIAS=bias is not None,
                             **constants)
    return table


def table_shape(num_heads: int, geometry, plan: configs.AttentionPlan) -> tuple[int, int, int, int]:
    return (table_classes(geometry), num_heads, plan.padded, plan.padded)
