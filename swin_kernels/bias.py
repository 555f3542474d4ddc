"""Relative position bias: the index into a Swin bias table and the dense (heads, N, N) bias gathered from it.

Used by the modules and model patches on every call (production code), and by the reference.
"""

from __future__ import annotations

import torch

from .geometry import as_sizes, spatial_dims


def relative_position_index(window, table_window=None, device=None) -> torch.Tensor:
    """(N, N) index into a ((2Th-1)(2Tw-1), heads) table: idx(i, j) = (Δrow + Th-1)·(2Tw-1) + (Δcol + Tw-1).

    ``window`` (Mh, Mw) (or an int for a square), N = Mh·Mw; a volume's (Md, Mh, Mw) indexes a
    ((2Td-1)(2Th-1)(2Tw-1), heads) table by ((Δd + Td-1)·(2Th-1) + (Δrow + Th-1))·(2Tw-1) + (Δcol + Tw-1).
    ``table_window`` T defaults to ``window``; a larger one addresses the centre of a bigger table, which is how a
    window clamped at run time keeps its relative positions.
    """
    dims = spatial_dims(window, table_window)
    window = as_sizes(window, dims, "window")
    table_window = window if table_window is None else as_sizes(table_window, dims, "table_window")
    if any(t < m for t, m in zip(table_window, window)):
        raise ValueError(f"a table for window {table_window} cannot serve window {window}")
    coords = torch.stack(torch.meshgrid(*(torch.arange(m, device=device) for m in window), indexing="ij"))
    coords = coords.reshape(dims, -1)  # token t = ((d · Mh) + row) · Mw + col
    index = torch.zeros((), dtype=torch.long, device=device)
    for axis in range(dims):
        delta = coords[axis][:, None] - coords[axis][None, :] + table_window[axis] - 1
        index = index * (2 * table_window[axis] - 1) + delta
    return index


def table_window_size(table: torch.Tensor) -> int:
    """The window T of a square ((2T-1)², heads) relative position bias table."""
    side = round(table.shape[0] ** 0.5)
    if table.dim() != 2 or side * side != table.shape[0] or side % 2 == 0:
        raise ValueError(f"relative position bias table must have shape ((2M-1)^2, heads), got {tuple(table.shape)}"
                         "; pass table_window for a rectangular window's table")
    return (side + 1) // 2


def relative_position_bias(table: torch.Tensor, window, index: torch.Tensor | None = None,
                           table_window=None) -> torch.Tensor:
    """Gather the dense (heads, N, N) bias of a window from a ((2Th-1)(2Tw-1), heads) table (T >= window); a
    volume's window (Md, Mh, Mw) from a ((2Td-1)(2Th-1)(2Tw-1), heads) table (pass table_window, or the index).

    ``index``: the table's own relative_position_index(T) where the caller keeps one (a module buffer), so a
    call at the full window builds nothing; it is rebuilt when absent or when the window is clamped below T.
    ``table_window``: T, needed for a rectangular table when ``index`` does not fit (a square one is inferred).
    """
    window = as_sizes(window, spatial_dims(window, table_window), "window")
    n = 1
    for m in window:
        n *= m
    if index is None or index.numel() != n * n:
        if table_window is None:
            rows = 1
            for m in window:
                rows *= 2 * m - 1
            table_window = window if table.shape[0] == rows else table_window_size(table)
        index = relative_position_index(window, table_window, device=table.device)
    # index_select: the same gather as table[index], without advanced indexing's host cost (~4x on small tables)
    return table.index_select(0, index.reshape(-1)).reshape(n, n, -1).permute(2, 0, 1).contiguous()


def dense_bias(table: torch.Tensor, window, table_window=None) -> torch.Tensor:
    """The ``bias`` argument of ``shifted_window_attention``: (heads, N, N) from a relative position bias table
    ((2Th-1)(2Tw-1), heads) for a window (Mh, Mw) <= (Th, Tw), read from the centre of the table."""
    return relative_position_bias(table, window, table_window=table_window)
