"""Where window token t of window w lives in the unpartitioned (B, H, W, ·) map, as Triton helpers.

Windows are numbered row-major over (batch, window row, window column); tokens row-major inside an (Mh, Mw)
window. Token t of window w sits at (yr, xr) of the padded, rolled map. Along an axis the roll acts on the first
``roll_len`` positions (the padded length when the map is padded first, the map's own length when it is rolled
first, as timm does) by ``roll`` (the shift modulo roll_len): rolled position yr < roll_len holds
(yr + roll) mod roll_len, and positions yr >= roll_len are padding. That position is a real token when it also
lies inside (H, W), a padding token (the pad vector) otherwise. The shift-mask region of a token is read off its
rolled position, and so depends only on whether the window is in the last window row / column (score_table.py).
The same map in C++ is csrc/index_maps.h; swin_kernels/geometry.py documents it.
"""

from __future__ import annotations

import triton
import triton.language as tl


def kernel_geometry(geometry) -> tuple[int, ...]:
    """(height, width, roll_len_h, roll_len_w, roll_h, roll_w, windows_per_row, windows_per_image): the size
    arguments of the maps, from a swin_kernels.geometry.WindowGeometry."""
    g = geometry
    return (g.height, g.width, *g.roll_length, *g.roll, g.windows_per_row, g.num_windows)


def has_padding(geometry) -> bool:
    """Whether any window slot is a padding token (the map is not a multiple of the window on some axis); the
    kernels compile the pad-vector select out when not."""
    return geometry.pad_bottom > 0 or geometry.pad_right > 0


@triton.jit
def _unroll(rolled, roll_len, roll):
    """Unrolled position of rolled position ``rolled`` < roll_len."""
    p = rolled + roll
    return tl.where(p >= roll_len, p - roll_len, p)


@triton.jit
def window_token_map(t, w, height, width, roll_len_h, roll_len_w, roll_h, roll_w,
                     windows_per_row, windows_per_image, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr):
    """(row, real, padded) of tokens t (< WINDOW_H·WINDOW_W is in the window) of windows w (scalar or block), int32.

    row:    index of the token in the flattened (B·H·W) map, widened to int64 for element offsets; meaningful
            only where ``real`` (the launchers check that token and window-slot counts fit in int32)
    real:   the token exists in the input map
    padded: the token is a padding position of the window (its q/k/v are the pad vector)
    """
    b = w // windows_per_image
    in_image = w % windows_per_image
    rolled_y = (in_image // windows_per_row) * WINDOW_H + t // WINDOW_W
    rolled_x = (in_image % windows_per_row) * WINDOW_W + t % WINDOW_W
    y = _unroll(rolled_y, roll_len_h, roll_h)
    x = _unroll(rolled_x, roll_len_w, roll_w)
    in_window = t < WINDOW_H * WINDOW_W
    inside = (rolled_y < roll_len_h) & (rolled_x < roll_len_w) & (y < height) & (x < width)
    row = ((b * height + y) * width + x).to(tl.int64)
    return row, in_window & inside, in_window & (inside == 0)


@triton.jit
def window_class(w, windows_per_row, windows_per_image, HAS_SHIFT: tl.constexpr):
    """Score-table class of window w: 2·(in the last window row) + (in the last window column); 0 unshifted."""
    if HAS_SHIFT:
        in_image = w % windows_per_image
        last_row = (in_image // windows_per_row) == (windows_per_image // windows_per_row - 1)
        last_col = (in_image % windows_per_row) == (windows_per_row - 1)
        cls = last_row.to(tl.int32) * 2 + last_col.to(tl.int32)
    else:
        cls = 0
    return cls


@triton.jit
def _roll_back(y, roll_len, roll):
    """Rolled position of unrolled position y < roll_len."""
    p = y - roll
    return tl.where(p < 0, p + roll_len, p)


@triton.jit
def map_token_to_slot(row, height, width, roll_len_h, roll_len_w, roll_h, roll_w,
                      windows_per_row, windows_per_image, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr):
    """Inverse map: flattened (B·H·W) token index (int32) -> flattened (B·nW·N) window slot (int64)."""
    x = row % width
    y = (row // width) % height
    b = row // (width * height)
    rolled_y = _roll_back(y, roll_len_h, roll_h)
    rolled_x = _roll_back(x, roll_len_w, roll_w)
    window = b * windows_per_image + (rolled_y // WINDOW_H) * windows_per_row + rolled_x // WINDOW_W
    return (window * (WINDOW_H * WINDOW_W) + (rolled_y % WINDOW_H) * WINDOW_W + rolled_x % WINDOW_W).to(tl.int64)
