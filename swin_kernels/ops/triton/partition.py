"""Fused pad + roll(-s) + partition, and reverse + roll(+s) + crop: one read and one write each.

partition: every window slot (B·nW·M², C) reads its token, or writes 0 for a padding position.
reverse:   every map token (B·H·W, C) reads its window slot; padding slots are simply never read.
The two are each other's adjoint, so each one's backward is the other.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..outputs import new_output
from . import configs
from .index_map import kernel_geometry, map_token_to_slot, window_token_map


@triton.jit
def window_partition_kernel(x_ptr, out_ptr, total_slots, channels, height, width, padded_h, padded_w, shift,
                            windows_per_row, windows_per_image, WINDOW: tl.constexpr, BLOCK_T: tl.constexpr,
                            BLOCK_C: tl.constexpr):
    slots = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < channels
    row, real, _ = window_token_map(slots % (WINDOW * WINDOW), slots // (WINDOW * WINDOW), height, width,
                                       padded_h, padded_w, shift, windows_per_row, windows_per_image, WINDOW)
    live = slots < total_slots
    x = tl.load(x_ptr + row[:, None] * channels + c[None, :], mask=(real & live)[:, None] & c_ok[None, :], other=0.0)
    tl.store(out_ptr + slots.to(tl.int64)[:, None] * channels + c[None, :], x, mask=live[:, None] & c_ok[None, :])


@triton.jit
def window_reverse_kernel(windows_ptr, out_ptr, total_rows, channels, height, width, padded_h, padded_w, shift,
                          windows_per_row, windows_per_image, WINDOW: tl.constexpr, BLOCK_T: tl.constexpr,
                          BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    live = rows < total_rows
    mask = live[:, None] & (c < channels)[None, :]
    slot = map_token_to_slot(rows, height, width, padded_h, padded_w, shift, windows_per_row, windows_per_image,
                             WINDOW)
    x = tl.load(windows_ptr + slot[:, None] * channels + c[None, :], mask=mask)
    tl.store(out_ptr + rows.to(tl.int64)[:, None] * channels + c[None, :], x, mask=mask)


def _launch(kernel, src: torch.Tensor, out: torch.Tensor, rows: int, channels: int, geo, window: int) -> None:
    batch = out.shape[0] if out.dim() == 4 else src.shape[0]
    configs.check_int32_indices(batch, geo[2], geo[3])
    config = configs.PARTITION_CONFIG
    block_t, block_c = config.kwargs["BLOCK_T"], config.kwargs["BLOCK_C"]
    kernel[(triton.cdiv(rows, block_t), triton.cdiv(channels, block_c))](
        src, out, rows, channels, *geo, WINDOW=window, **config.kwargs, num_warps=config.num_warps,
        num_stages=config.num_stages)


def partition_forward(x: torch.Tensor, window: int, shift: int) -> torch.Tensor:
    """(B, H, W, C) -> (B·nW, M², C)."""
    batch, height, width, channels = x.shape
    geo = kernel_geometry(height, width, window, shift)
    out = new_output((batch * geo[-1], window * window, channels), x)
    _launch(window_partition_kernel, x, out, out.shape[0] * out.shape[1], channels, geo, window)
    return out


def reverse_forward(windows: torch.Tensor, window: int, height: int, width: int, shift: int) -> torch.Tensor:
    """(B·nW, M², C) -> (B, H, W, C)."""
    channels = windows.shape[-1]
    geo = kernel_geometry(height, width, window, shift)
    batch = windows.shape[0] // geo[-1]
    out = new_output((batch, height, width, channels), windows)
    _launch(window_reverse_kernel, windows, out, batch * height * width, channels, geo, window)
    return out
