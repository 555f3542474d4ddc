"""Pure PyTorch reference of Swin's (shifted) window attention, written as the paper and official code do it.

Every step is a separate tensor operation (pad, roll, partition copy, a (windows, heads, N, N) score tensor,
reverse copy, roll back, crop): slow and memory hungry, but obviously right. The fused backends are tested
against these functions, and these functions against Hugging Face transformers' Swin.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .bias import relative_position_bias, relative_position_index, table_window_size  # noqa: F401  (re-exported)
from .geometry import SHIFT_MASK_VALUE, Pair, WindowGeometry, as_pair


def _axis_regions(length: int, window: int, shift: int, device=None) -> torch.Tensor:
    """Regions [0, L-M), [L-M, L-s), [L-s, L) of the positions of a padded axis; all 0 when s = 0."""
    i = torch.arange(length, device=device)
    if shift == 0:
        return torch.zeros_like(i)
    return (i >= length - window).long() + (i >= length - shift).long()


def shift_region_ids(geometry: WindowGeometry, device=None) -> torch.Tensor:
    """(Hp, Wp) region id of every position of the rolled, padded map: 3 regions per shifted axis.

    After the roll by -s the last window along an axis holds tokens that were at the two ends of the map, which
    must not attend to each other. The regions are laid out on the padded grid whichever order pad and roll take.
    """
    g = geometry
    rows = _axis_regions(g.padded_height, g.window[0], g.shift[0], device)
    cols = _axis_regions(g.padded_width, g.window[1], g.shift[1], device)
    return rows[:, None] * 3 + cols[None, :]


def shift_attention_mask(geometry: WindowGeometry, dtype=torch.float32, device=None) -> torch.Tensor | None:
    """(nW, N, N) additive mask: SHIFT_MASK_VALUE between tokens of different regions, else 0 (None unshifted)."""
    if not geometry.shifted:
        return None
    ids = shift_region_ids(geometry, device)[None, :, :, None].to(dtype)
    ids = partition_windows(ids, geometry.window).squeeze(-1)  # (nW, N)
    different = ids[:, :, None] != ids[:, None, :]
    return torch.zeros(different.shape, dtype=dtype, device=device).masked_fill(different, SHIFT_MASK_VALUE)


# ------------------------------------------------------------------------------------- pad / roll / partition
def pad_to_windows(x: torch.Tensor, geometry: WindowGeometry, pad_value: torch.Tensor | None = None) -> torch.Tensor:
    """Pad (B, H, W, C) at the bottom/right to (B, Hp, Wp, C) with zeros or with the vector ``pad_value``."""
    g = geometry
    if g.pad_bottom == 0 and g.pad_right == 0:
        return x
    if pad_value is None:
        return F.pad(x, (0, 0, 0, g.pad_right, 0, g.pad_bottom))
    b, h, w, c = x.shape
    fill = pad_value.to(x.dtype).reshape(1, 1, 1, c)
    x = torch.cat([x, fill.expand(b, h, g.pad_right, c)], dim=2)
    return torch.cat([x, fill.expand(b, g.pad_bottom, g.padded_width, c)], dim=1)


def cyclic_roll(x: torch.Tensor, shift) -> torch.Tensor:
    """torch.roll over the two spatial dims of (B, H, W, C) by (rows, columns); the block rolls by -s, then +s."""
    shift = as_pair(shift, "shift")
    return torch.roll(x, shifts=shift, dims=(1, 2)) if shift != (0, 0) else x


def _negated(shift) -> Pair:
    return -shift[0], -shift[1]


def pad_and_roll(x: torch.Tensor, geometry: WindowGeometry, pad_value: torch.Tensor | None = None) -> torch.Tensor:
    """(B, H, W, C) -> the rolled, padded (B, Hp, Wp, C) map, in the geometry's order of pad and roll."""
    g = geometry
    if g.roll_before_pad:
        return pad_to_windows(cyclic_roll(x, _negated(g.shift)), g, pad_value)
    return cyclic_roll(pad_to_windows(x, g, pad_value), _negated(g.shift))


def unroll_and_crop(x: torch.Tensor, geometry: WindowGeometry) -> torch.Tensor:
    """Inverse of pad_and_roll on the real tokens: the rolled, padded (B, Hp, Wp, C) map -> (B, H, W, C)."""
    g = geometry
    if g.roll_before_pad:
        return cyclic_roll(x[:, :g.height, :g.width], g.shift)
    return cyclic_roll(x, g.shift)[:, :g.height, :g.width]


def partition_windows(x: torch.Tensor, window) -> torch.Tensor:
    """(B, Hp, Wp, C) -> (B·nW, Mh·Mw, C), windows row-major over the grid, tokens row-major in a window."""
    mh, mw = as_pair(window, "window")
    b, hp, wp, c = x.shape
    x = x.reshape(b, hp // mh, mh, wp // mw, mw, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, mh * mw, c)


def merge_windows(windows: torch.Tensor, window, padded_height: int, padded_width: int) -> torch.Tensor:
    """Inverse of partition_windows: (B·nW, Mh·Mw, C) -> (B, Hp, Wp, C)."""
    mh, mw = as_pair(window, "window")
    c = windows.shape[-1]
    x = windows.reshape(-1, padded_height // mh, padded_width // mw, mh, mw, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, padded_height, padded_width, c)


def window_partition(x: torch.Tensor, window_size, shift_size=0, roll_before_pad: bool = False) -> torch.Tensor:
    """pad and roll(-s) (in either order) -> partition: (B, H, W, C) -> (B·nW, Mh·Mw, C)."""
    g = WindowGeometry(x.shape[1], x.shape[2], window_size, shift_size, roll_before_pad)
    return partition_windows(pad_and_roll(x, g), g.window)


def window_reverse(windows: torch.Tensor, window_size, height: int, width: int, shift_size=0,
                   roll_before_pad: bool = False) -> torch.Tensor:
    """reverse -> roll(+s) and crop (in the order undoing window_partition): (B·nW, Mh·Mw, C) -> (B, H, W, C)."""
    g = WindowGeometry(height, width, window_size, shift_size, roll_before_pad)
    return unroll_and_crop(merge_windows(windows, g.window, g.padded_height, g.padded_width), g)


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
    """The attention core of a Swin block on the unpartitioned qkv map: (B, H, W, 3C) -> (B, H, W, C).

    pad (padded tokens take ``pad_qkv``, the qkv bias, as their q/k/v) and roll(-s), in the order the geometry
    says -> partition -> softmax(q kᵀ·scale + bias + shift mask) v -> merge heads -> reverse -> roll(+s) and crop.
    This is the contract every fused backend implements in one pass.
    """
    b, h, w, c3 = qkv.shape
    g = WindowGeometry(h, w, window_size, shift_size, roll_before_pad)
    head_dim = c3 // (3 * num_heads)
    scale = head_dim**-0.5 if scale is None else scale
    windows = partition_windows(pad_and_roll(qkv, g, pad_qkv), g.window)
    q, k, v = split_heads(windows, num_heads)
    mask = shift_attention_mask(g, dtype=qkv.dtype, device=qkv.device)
    out = merge_heads(attention_core(q, k, v, bias, scale, dropout_p, mask))
    return unroll_and_crop(merge_windows(out, g.window, g.padded_height, g.padded_width), g)
