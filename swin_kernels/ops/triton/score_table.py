"""The additive score table: (bias + shift mask)·log2(e) for each window class, pad keys at -inf.

The shift mask of a window depends only on whether it is in the last window row and/or column of the map
(the only windows that straddle regions, reference.shift_region_ids), so 4 classes cover every window of a
shifted map and 1 an unshifted one. Token r·M + c of a last-row window sits at rolled row Hp - M + r: region
1 + (r >= M - s); elsewhere region 0 (columns likewise). A table of (classes, heads, Np, Np) with Np = padded
N is built once per call; the attention kernels then add one unmasked tile per block instead of gathering
the bias and comparing region ids per element.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import configs

SHIFT_MASK = tl.constexpr(-100.0)  # geometry.SHIFT_MASK_VALUE


@triton.jit
def score_table_kernel(bias_ptr, params_ptr, table_ptr, num_heads, shift, WINDOW: tl.constexpr,
                       PADDED: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, HAS_BIAS: tl.constexpr):
    cls = tl.program_id(0)  # 2·(last window row) + (last window column)
    head = tl.program_id(1)
    N: tl.constexpr = WINDOW * WINDOW
    log2e = tl.load(params_ptr + 1)  # in the table's dtype (a scalar argument would be fp32)
    i = tl.program_id(2) * BLOCK_I + tl.arange(0, BLOCK_I)  # query tokens
    j = tl.arange(0, BLOCK_J)  # key tokens (BLOCK_J: PADDED rounded up to a power of two)
    value = tl.zeros([BLOCK_I, BLOCK_J], table_ptr.dtype.element_ty)
    if HAS_BIAS:
        value += tl.load(bias_ptr + head * (N * N) + i[:, None] * N + j[None, :],
                         mask=(i[:, None] < N) & (j[None, :] < N), other=0.0).to(value.dtype)
    last_row = cls // 2
    last_col = cls % 2
    region_i = (last_row * (1 + (i // WINDOW >= WINDOW - shift).to(tl.int32))) * 3 + \
        last_col * (1 + (i % WINDOW >= WINDOW - shift).to(tl.int32))
    region_j = (last_row * (1 + (j // WINDOW >= WINDOW - shift).to(tl.int32))) * 3 + \
        last_col * (1 + (j % WINDOW >= WINDOW - shift).to(tl.int32))
    value = tl.where(region_i[:, None] != region_j[None, :], value + SHIFT_MASK, value) * log2e
    value = tl.where(j[None, :] < N, value, float("-inf"))
    table = table_ptr + (cls * num_heads + head).to(tl.int64) * (PADDED * PADDED)
    tl.store(table + i[:, None] * PADDED + j[None, :], value, mask=(i[:, None] < PADDED) & (j[None, :] < PADDED))


def score_table(bias: torch.Tensor | None, params: torch.Tensor, num_heads: int, window: int, shift: int,
                plan: configs.AttentionPlan) -> torch.Tensor:
    """(classes, heads, Np, Np) in the dtype of ``params`` (attention_params); classes = 4 when shifted, else 1."""
    classes = 4 if shift > 0 else 1
    table = torch.empty((classes, num_heads, plan.padded, plan.padded), dtype=params.dtype, device=params.device)
    block_i = 16
    score_table_kernel[(classes, num_heads, triton.cdiv(plan.padded, block_i))](
        params if bias is None else bias, params, table, num_heads, shift, WINDOW=window, PADDED=plan.padded,
        BLOCK_I=block_i, BLOCK_J=triton.next_power_of_2(plan.padded), HAS_BIAS=bias is not None, num_warps=4)
    return table
