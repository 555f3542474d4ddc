"""Fused pad + roll(-s) + partition, and reverse + roll(+s) + crop: one read and one write each.

partition: every window slot (B·nW·N, C) reads its token, or writes 0 for a padding position.
reverse:   every input token (B·[D·]H·W, C) reads its window slot; padding slots are simply never read.
The two are each other's adjoint, so each one's backward is the other. Maps and volumes alike (index_map.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..outputs import new_output
from . import configs
from .index_map import depth_geometry, kernel_geometry, map_token_to_slot, window_sizes, window_token_map


@triton.jit
def window_partition_kernel(x_ptr, out_ptr, total_slots, channels, height, width, roll_len_h, roll_len_w, roll_h,
                            roll_w, windows_per_row, windows_per_image, depth, roll_len_d, roll_d, windows_per_plane,
                            WINDOW_D: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr,
                            BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    N: tl.constexpr = WINDOW_D * WINDOW_H * WINDOW_W
    slots = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < channels
    row, real, _ = window_token_map(slots % N, slots // N, height, width, roll_len_h, roll_len_w, roll_h, roll_w,
                                    windows_per_row, windows_per_image, depth, roll_len_d, roll_d, windows_per_plane,
                                    WINDOW_D, WINDOW_H, WINDOW_W)
    live = slots < total_slots
    x = tl.load(x_ptr + row[:, None] * channels + c[None, :], mask=(real & live)[:, None] & c_ok[None, :], other=0.0)
    tl.store(out_ptr + slots.to(tl.int64)[:, None] * channels + c[None, :], x, mask=live[:, None] & c_ok[None, :])


@triton.jit
def window_reverse_kernel(windows_ptr, out_ptr, total_rows, channels, height, width, roll_len_h, roll_len_w, roll_h,
                          roll_w, windows_per_row, windows_per_image, depth, roll_len_d, roll_d, windows_per_plane,
                          WINDOW_D: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr,
                          BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    live = rows < total_rows
    mask = live[:, None] & (c < channels)[None, :]
    slot = map_token_to_slot(rows, height, width, roll_len_h, roll_len_w, roll_h, roll_w, windows_per_row,
                             windows_per_image, depth, roll_len_d, roll_d, windows_per_plane, WINDOW_D, WINDOW_H,
                             WINDOW_W)
    x = tl.load(windows_ptr + slot[:, None] * channels + c[None, :], mask=mask)
    tl.store(out_ptr + rows.to(tl.int64)[:, None] * channels + c[None, :], x, mask=mask)


def _launch(kernel, src: torch.Tensor, out: torch.Tensor, rows: int, channels: int, geometry, batch: int) -> None:
    g = geometry
    configs.check_int32_indices(batch, *g.padded_sizes)
    config = configs.PARTITION_CONFIG
    meta = config.kwargs
    kernel[(triton.cdiv(rows, meta["BLOCK_T"]), triton.cdiv(channels, meta["BLOCK_C"]))](
        src, out, rows, channels, *kernel_geometry(g), *depth_geometry(g), **window_sizes(g), **meta,
        **config.launch_options())


def partition_forward(x: torch.Tensor, geometry) -> torch.Tensor:
    """(B, [D,] H, W, C) -> (B·nW, N, C)."""
    g = geometry
    batch, channels = x.shape[0], x.shape[-1]
    out = new_output((batch * g.num_windows, g.tokens, channels), x)
    _launch(window_partition_kernel, x, out, out.shape[0] * out.shape[1], channels, g, batch)
    return out


def reverse_forward(windows: torch.Tensor, geometry) -> torch.Tensor:
    """(B·nW, N, C) -> (B, [D,] H, W, C)."""
    g = geometry
    channels = windows.shape[-1]
    batch = windows.shape[0] // g.num_windows
    out = new_output((batch, *g.sizes, channels), windows)
    rows = batch
    for n in g.sizes:
        rows = rows * n
    _launch(window_reverse_kernel, windows, out, rows, channels, g, batch)
    return out
