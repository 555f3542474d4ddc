"""D = rowsum(dO ∘ O) per (window, head) row, in the log-sum-exp's padded layout, ahead of the backward kernels.

Both backward kernels read D like the lse: a plain load, which Triton places straight in the layout its use
needs. Reducing dO ∘ O inside them instead left D in a layout replicated across the 8 lanes of a row, and moving it
into the mma layout stored each value from all 8 lanes to one shared-memory slot (identical values, but a
write/write hazard for compute-sanitizer racecheck). Reading O here once also spares both backward kernels its read.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import configs
from .index_map import depth_geometry, kernel_geometry, window_sizes, window_token_map


@triton.jit
def row_delta_kernel(out_ptr, dout_ptr, delta_ptr, total_pairs, num_heads, height, width, roll_len_h, roll_len_w,
                     roll_h, roll_w, windows_per_row, windows_per_image, depth, roll_len_d, roll_d, windows_per_plane,
                     WINDOW_D: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr, HEAD_DIM: tl.constexpr,
                     BLOCK_D: tl.constexpr, PADDED: tl.constexpr, BLOCK_M: tl.constexpr):
    pair = tl.program_id(0)
    window = pair // num_heads
    head = pair % num_heads
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    d = tl.arange(0, BLOCK_D)
    row, real, _ = window_token_map(rows, window, height, width, roll_len_h, roll_len_w, roll_h, roll_w,
                                    windows_per_row, windows_per_image, depth, roll_len_d, roll_d, windows_per_plane,
                                    WINDOW_D, WINDOW_H, WINDOW_W)
    offsets = row[:, None] * (num_heads * HEAD_DIM) + head * HEAD_DIM + d[None, :]
    mask = real[:, None] & (d < HEAD_DIM)[None, :]
    acc_ty = delta_ptr.dtype.element_ty
    do = tl.load(dout_ptr + offsets, mask=mask, other=0.0).to(acc_ty)
    o = tl.load(out_ptr + offsets, mask=mask, other=0.0).to(acc_ty)
    # rows of padding tokens and past the window's N: 0 (their dO is 0)
    tl.store(delta_ptr + pair.to(tl.int64) * PADDED + rows, tl.sum(do * o, 1), mask=rows < PADDED)


def row_delta(out: torch.Tensor, dout: torch.Tensor, lse: torch.Tensor, num_heads: int, geometry,
              plan: configs.AttentionPlan) -> torch.Tensor:
    """(B·nW·heads, Np) in the lse's dtype."""
    g = geometry
    delta = torch.empty_like(lse)
    config = configs.ROW_DELTA_CONFIG
    block_m = min(config.kwargs["BLOCK_M"], plan.padded)
    row_delta_kernel[(lse.shape[0], triton.cdiv(plan.padded, block_m))](
        out, dout, delta, lse.shape[0], num_heads, *kernel_geometry(g), *depth_geometry(g), **window_sizes(g),
        HEAD_DIM=plan.head_dim, BLOCK_D=plan.block_d, PADDED=plan.padded, BLOCK_M=block_m, **config.launch_options())
    return delta
