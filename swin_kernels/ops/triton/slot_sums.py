"""Second stage of the deterministic reductions: add the per-slot partial sums in slot order."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import configs

TILE_ELEMENTS = 8192  # the largest tile of the sums (32 slots x 256 columns)


@triton.jit
def sum_slots_kernel(part_ptr, out_ptr, slots, part_slot_stride, part_a_stride, part_b_stride,
                     out_offset, out_a_stride, out_b_stride, cols, BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr):
    """out[a, b, :cols] = Σ_s part[s, a, b, :cols], slots summed in blocks of BLOCK_S in a fixed order."""
    a = tl.program_id(0)
    b = tl.program_id(1)
    c = tl.arange(0, BLOCK_C)
    c_ok = c < cols
    base = part_ptr + a * part_a_stride + b * part_b_stride
    acc = tl.zeros([BLOCK_C], part_ptr.dtype.element_ty)
    for s0 in range(0, slots, BLOCK_S):
        s = s0 + tl.arange(0, BLOCK_S)
        tile = tl.load(base + s.to(tl.int64)[:, None] * part_slot_stride + c[None, :],
                       mask=(s[:, None] < slots) & c_ok[None, :], other=0.0)
        acc += tl.sum(tile, 0)
    tl.store(out_ptr + out_offset + a * out_a_stride + b * out_b_stride + c, acc.to(out_ptr.dtype.element_ty),
             mask=c_ok)


def sum_slots(part: torch.Tensor, out: torch.Tensor, out_offset: int, out_a_stride: int, out_b_stride: int,
              rows: int, cols: int) -> None:
    """Sum part (slots, A, >=rows, >=cols) over slots into out[offset + a·sa + b·sb + c] for b < rows, c < cols."""
    slots, a = part.shape[:2]
    config = configs.REDUCE_CONFIG
    block_c = max(16, configs.next_power_of_2(cols))
    sum_slots_kernel[(a, rows)](
        part, out, slots, part.stride(0), part.stride(1), part.stride(2), out_offset, out_a_stride, out_b_stride,
        cols, BLOCK_S=block_slots(block_c), BLOCK_C=block_c, **config.launch_options())


def block_slots(block_c: int) -> int:
    """BLOCK_S: a (BLOCK_S, BLOCK_C) tile of at most TILE_ELEMENTS, so the rows of large windows (BLOCK_C up to
    1024) add fewer slots per step in the same registers."""
    return min(configs.REDUCE_CONFIG.kwargs["BLOCK_S"], max(1, TILE_ELEMENTS // block_c))
