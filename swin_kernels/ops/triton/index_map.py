"""Where window token t of window w lives in the unpartitioned (B, H, W, ·) map, as Triton helpers.

Windows are numbered row-major over (batch, window row, window column); tokens row-major inside a window.
Token t of window w sits at (yr, xr) of the padded, rolled map; the roll by -s means the rolled map at (yr, xr)
holds the padded map's (yr + s mod Hp, xr + s mod Wp). That position is a real token when it lies inside
(H, W), a padding token (the pad vector) otherwise. The shift-mask region of a token is read off its rolled
position, and so depends only on whether the window is in the last window row / column (score_table.py).
"""

from __future__ import annotations

import triton
import triton.language as tl


def kernel_geometry(height: int, width: int, window: int, shift: int) -> tuple[int, ...]:
    """(height, width, padded_h, padded_w, shift, windows_per_row, windows_per_image): the maps' size arguments."""
    padded_h, padded_w = triton.cdiv(height, window) * window, triton.cdiv(width, window) * window
    return height, width, padded_h, padded_w, shift, padded_w // window, (padded_h // window) * (padded_w // window)


@triton.jit
def window_token_map(t, w, height, width, padded_h, padded_w, shift, windows_per_row, windows_per_image,
                     WINDOW: tl.constexpr):
    """(row, real, padded) of tokens t (< WINDOW² is in the window) of windows w (scalar or block), both int32.

    row:    index of the token in the flattened (B·H·W) map, widened to int64 for element offsets; meaningful
            only where ``real`` (the launchers check that token and window-slot counts fit in int32)
    real:   the token exists in the input map
    padded: the token is a padding position of the window (its q/k/v are the pad vector)
    """
    b = w // windows_per_image
    in_image = w % windows_per_image
    rolled_y = (in_image // windows_per_row) * WINDOW + t // WINDOW
    rolled_x = (in_image % windows_per_row) * WINDOW + t % WINDOW
    y = rolled_y + shift
    y = tl.where(y >= padded_h, y - padded_h, y)
    x = rolled_x + shift
    x = tl.where(x >= padded_w, x - padded_w, x)
    in_window = t < WINDOW * WINDOW
    inside = (y < height) & (x < width)
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
def map_token_to_slot(row, height, width, padded_h, padded_w, shift, windows_per_row, windows_per_image,
                      WINDOW: tl.constexpr):
    """Inverse map: flattened (B·H·W) token index (int32) -> flattened (B·nW·M²) window slot (int64)."""
    x = row % width
    y = (row // width) % height
    b = row // (width * height)
    rolled_y = y - shift
    rolled_y = tl.where(rolled_y < 0, rolled_y + padded_h, rolled_y)
    rolled_x = x - shift
    rolled_x = tl.where(rolled_x < 0, rolled_x + padded_w, rolled_x)
    window = b * windows_per_image + (rolled_y // WINDOW) * windows_per_row + rolled_x // WINDOW
    return (window * (WINDOW * WINDOW) + (rolled_y % WINDOW) * WINDOW + rolled_x % WINDOW).to(tl.int64)
