"""Pure PyTorch reference of Swin's (shifted) window attention, written as the paper and official code do it.

Every step is a separate tensor operation (pad, roll, partition copy, a (windows, heads, N, N) score tensor,
reverse copy, roll back, crop): slow and memory hungry, but obviously right. The fused backends are tested
against these functions, and these functions against Hugging Face transformers' Swin.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .bias import relative_position_bias, relative_position_index, table_window_size  # noqa: F401  (re-exported)
from .geometry import SHIFT_MASK_VALUE, WindowGeometry, as_pair


def _axis_regions(length: int, window: int, shift: int, device=None) -> torch.Tensor:
    """Regions [0, L-M), [L-M, L-s), [L-s, L) of the positions of a padded axis; all 0 when s = 0."""
    i = torch.arange(length, device=device)
    if shift == 0:
        return torch.zeros_like(i)
    return (i >= length - window).long() + (i >= length - shift).long()


def shift_region_ids(geometry: WindowGeometry, device=None) -> torch.Tensor:
    """(Hp, Wp) — (Dp, Hp, Wp) for a volume — region id of every position of the rolled, padded map: 3 regions
    per shifted axis (up to 9 in 2-D, 27 in 3-D).

    After the roll by -s the last window along an axis holds tokens that were at the two ends of the map, which
    must not attend to each other. The regions are laid out on the padded grid whichever order pad and roll take.
    """
    g = geometry
    ids = torch.zeros((), dtype=torch.long, device=device)
    for padded, m, s in zip(g.padded_sizes, g.window, g.shift):
        ids = ids[..., None] * 3 + _axis_regions(padded, m, s, device)
    return ids


def shift_attention_mask(geometry: WindowGeometry, dtype=torch.float32, device=None) -> torch.Tensor | None:
    """(nW, N, N) additive mask: SHIFT_MASK_VALUE between tokens of different regions, else 0 (None unshifted)."""
    if not geometry.shifted:
        return None
    ids = shift_region_ids(geometry, device)[None, ..., None].to(dtype)
    ids = partition_windows(ids, geometry.window).squeeze(-1)  # (nW, N)
    different = ids[:, :, None] != ids[:, None, :]
    return torch.zeros(different.shape, dtype=dtype, device=device).masked_fill(different, SHIFT_MASK_VALUE)


# ------------------------------------------------------------------------------------- pad / roll / partition
# Maps are (B, H, W, C), volumes (B, D, H, W, C): the spatial axes are dims 1 .. x.dim() - 2.
def pad_to_windows(x: torch.Tensor, geometry: WindowGeometry, pad_value: torch.Tensor | None = None) -> torch.Tensor:
    """Pad the far end of every spatial axis to whole windows ((B, Hp, Wp, C) or (B, Dp, Hp, Wp, C)) with zeros or
    with the vector ``pad_value``."""
    g = geometry
    if not g.has_padding:
        return x
    if pad_value is None:
        pads = [0, 0]
        for size, padded in reversed(list(zip(g.sizes, g.padded_sizes))):
            pads += [0, padded - size]
        return F.pad(x, pads)
    fill = pad_value.to(x.dtype)
    for axis, padded in enumerate(g.padded_sizes, start=1):
        missing = padded - x.shape[axis]
        if missing:
            shape = list(x.shape)
            shape[axis] = missing
            x = torch.cat([x, fill.expand(shape)], dim=axis)
    return x


def cyclic_roll(x: torch.Tensor, shift) -> torch.Tensor:
    """torch.roll over the spatial dims of (B, H, W, C) / (B, D, H, W, C); the block rolls by -s, then +s."""
    shift = tuple(shift) if isinstance(shift, (tuple, list)) else as_pair(shift, "shift")
    if not any(shift):
        return x
    return torch.roll(x, shifts=shift, dims=tuple(range(1, len(shift) + 1)))


def _negated(shift) -> tuple[int, ...]:
    return tuple(-s for s in shift)


def pad_and_roll(x: torch.Tensor, geometry: WindowGeometry, pad_value: torch.Tensor | None = None) -> torch.Tensor:
    """The map or volume -> its rolled, padded form, in the geometry's order of pad and roll."""
    g = geometry
    if g.roll_before_pad:
        return pad_to_windows(cyclic_roll(x, _negated(g.shift)), g, pad_value)
    return cyclic_roll(pad_to_windows(x, g, pad_value), _negated(g.shift))


def _crop(x: torch.Tensor, sizes) -> torch.Tensor:
    return x[(slice(None), *(slice(0, n) for n in sizes))]


def unroll_and_crop(x: torch.Tensor, geometry: WindowGeometry) -> torch.Tensor:
    """Inverse of pad_and_roll on the real tokens: the rolled, padded map or volume -> (B, [D,] H, W, C)."""
    g = geometry
    if g.roll_before_pad:
        return cyclic_roll(_crop(x, g.sizes), g.shift)
    return _crop(cyclic_roll(x, g.shift), g.sizes)


def partition_windows(x: torch.Tensor, window) -> torch.Tensor:
    """(B, Hp, Wp, C) -> (B·nW, Mh·Mw, C) (volumes: (B, Dp, Hp, Wp, C) -> (B·nW, Md·Mh·Mw, C)), windows row-major
    over the grid, tokens row-major in a window."""
    window = tuple(window) if isinstance(window, (tuple, list)) else as_pair(window, "window")
    b, *padded, c = x.shape
    split = [b]
    for p, m in zip(padded, window):
        split += [p // m, m]
    k = len(window)
    order = [0, *range(1, 2 * k, 2), *range(2, 2 * k + 1, 2), 2 * k + 1]
    return x.reshape(*split, c).permute(order).reshape(-1, _numel(window), c)


def _numel(window) -> int:
    n = 1
    for m in window:
        n *= m
    return n


def merge_windows(windows: torch.Tensor, window, *padded_sizes: int) -> torch.Tensor:
    """Inverse of partition_windows: (B·nW, N, C) -> (B, Hp, Wp, C), or (B, Dp, Hp, Wp, C) given three sizes."""
    window = tuple(window) if isinstance(window, (tuple, list)) else as_pair(window, "window")
    c = windows.shape[-1]
    k = len(window)
    grid = [p // m for p, m in zip(padded_sizes, window)]
    x = windows.reshape(-1, *grid, *window, c)
    order = [0]
    for axis in range(k):
        order += [1 + axis, 1 + k + axis]
    return x.permute(*order, 2 * k + 1).reshape(-1, *padded_sizes, c)


def _geometry_of(x_sizes, window_size, shift_size, roll_before_pad) -> WindowGeometry:
    return WindowGeometry.of(x_sizes, window_size, shift_size, roll_before_pad)


def window_partition(x: torch.Tensor, window_size, shift_size=0, roll_before_pad: bool = False) -> torch.Tensor:
    """pad and roll(-s) (in either order) -> partition: (B, [D,] H, W, C) -> (B·nW, N, C)."""
    g = _geometry_of(x.shape[1:-1], window_size, shift_size, roll_before_pad)
    return partition_windows(pad_and_roll(x, g), g.window)


def window_reverse(windows: torch.Tensor, window_size, height: int, width: int, shift_size=0,
                   roll_before_pad: bool = False, depth: int | None = None) -> torch.Tensor:
    """reverse -> roll(+s) and crop (in the order undoing window_partition): (B·nW, N, C) -> (B, [D,] H, W, C)."""
    g = WindowGeometry(height, width, window_size, shift_size, roll_before_pad, depth=depth)
    return unroll_and_crop(merge_windows(windows, g.window, *g.padded_sizes), g)


# -------------------------------------------------------------------------------------------------- attention
def attention_core(q, k, v, bias=None, scale=1.0, dropout_p=0.0, mask=None):
    """softmax(q kᵀ·scale + bias + mask) v over (..., heads, N, d); bias (heads, N, N), mask (nW, N, N).

    q, k, v are (B·nW, heads, N, d); the mask repeats every nW windows. The softmax runs in fp32 for half
    types (as HF transformers does), in the input dtype otherwise.
    """
    scores = (q * scale) @ k.transpose(-2, -1)
    if bias is not None:
        scores = scores + bias.to(scores.dtype).unsqueeze(0)
    if mask is not None:
        n_win, n = mask.shape[0], mask.shape[-1]
        scores = scores.reshape(-1, n_win, scores.shape[1], n, n) + mask.to(scores.dtype)[None, :, None]
        scores = scores.reshape(-1, scores.shape[2], n, n)
    softmax_dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    probs = scores.softmax(dim=-1, dtype=softmax_dtype).to(q.dtype)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p, training=True)
    return probs @ v


def split_heads(tokens: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B', N, 3C) laid out [q | k | v], each head-major, -> three (B', heads, N, d)."""
    b, n, c3 = tokens.shape
    qkv = tokens.reshape(b, n, 3, num_heads, c3 // (3 * num_heads)).permute(2, 0, 3, 1, 4)
    return qkv[0], qkv[1], qkv[2]


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B', heads, N, d) -> (B', N, heads·d)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)


def shifted_window_attention(
    qkv: torch.Tensor,
    num_heads: int,
    window_size,
    shift_size=0,
    pad_qkv: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    roll_before_pad: bool = False,
) -> torch.Tensor:
    """The attention core of a Swin block on the unpartitioned qkv map: (B, H, W, 3C) -> (B, H, W, C); a volume
    (B, D, H, W, 3C) with a 3-int window and shift -> (B, D, H, W, C).

    pad (padded tokens take ``pad_qkv``, the qkv bias, as their q/k/v) and roll(-s), in the order the geometry
    says -> partition -> softmax(q kᵀ·scale + bias + shift mask) v -> merge heads -> reverse -> roll(+s) and crop.
    This is the contract every fused backend implements in one pass.
    """
    c3 = qkv.shape[-1]
    g = _geometry_of(qkv.shape[1:-1], window_size, shift_size, roll_before_pad)
    head_dim = c3 // (3 * num_heads)
    scale = head_dim**-0.5 if scale is None else scale
    windows = partition_windows(pad_and_roll(qkv, g, pad_qkv), g.window)
    q, k, v = split_heads(windows, num_heads)
    mask = shift_attention_mask(g, dtype=qkv.dtype, device=qkv.device)
    out = merge_heads(attention_core(q, k, v, bias, scale, dropout_p, mask))
    return unroll_and_crop(merge_windows(out, g.window, *g.padded_sizes), g)
