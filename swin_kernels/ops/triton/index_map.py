"""Where window token t of window w lives in the unpartitioned (B, [D,] H, W, ·) input, as Triton helpers.

Every geometry reaches the kernels as a volume (B, D, H, W, ·) with an (Md, Mh, Mw) window (a map is the volume of
depth 1, window 1 along the depth). Windows are numbered row-major over (batch, window plane, window row, window
column); tokens row-major over (depth, row, column) inside a window. Token t of window w sits at (zr, yr, xr) of the
padded, rolled volume. Along an axis the roll acts on the first ``roll_len`` positions (the padded length when the
input is padded first, the input's own length when it is rolled first, as timm does) by ``roll`` (the shift modulo
roll_len): rolled position yr < roll_len holds (yr + roll) mod roll_len, and positions yr >= roll_len are padding.
That position is a real token when it also lies inside (D, H, W), a padding token (the pad vector) otherwise. The
shift-mask region of a token is read off its rolled position, and so depends only on whether the window is in the
last window plane / row / column (score_table.py).

WINDOW_D is a constexpr. When it is 1 the depth axis is neither windowed nor shifted (0 <= shift < 1), so every
plane of a volume is an image of its own: kernel_geometry then folds the depth into the batch (B·D images of one
plane; the flattened token index is the same), and the helpers compile exactly the 2-D index arithmetic. The depth
arguments (depth_geometry) come after all other run-time arguments of every kernel, so a map's kernels keep their
parameter layout as well.
The same map in C++ is csrc/index_maps.h; swin_kernels/geometry.py documents it.
"""

from __future__ import annotations

import triton
import triton.language as tl


def kernel_geometry(geometry) -> tuple[int, ...]:
    """(height, width, roll_len_h, roll_len_w, roll_h, roll_w, windows_per_row, windows_per_image): the size
    arguments of the maps along the rows and columns, from a swin_kernels.geometry.WindowGeometry of a map or a
    volume. With a window of depth 1 the images are the B·D planes (windows_per_image = windows_per_plane)."""
    g = geometry
    _, height, width = g.sizes3
    _, len_h, len_w = g.roll_length3
    _, roll_h, roll_w = g.roll3
    images = g.windows_per_plane if g.window3[0] == 1 else g.num_windows
    return (height, width, len_h, len_w, roll_h, roll_w, g.windows_per_row, images)


def depth_geometry(geometry) -> tuple[int, ...]:
    """(depth, roll_len_d, roll_d, windows_per_plane): the size arguments along the depth (1, 1, 0 and all windows
    of an image for a map, or for a window of depth 1). The kernels take them after all their other run-time
    arguments, so a map's kernels keep the parameter layout, and so the code, they have without a depth axis."""
    g = geometry
    if g.window3[0] == 1:
        return (1, 1, 0, g.windows_per_plane)
    return (g.sizes3[0], g.roll_length3[0], g.roll3[0], g.windows_per_plane)


def window_sizes(geometry) -> dict:
    """The WINDOW_D / WINDOW_H / WINDOW_W constexprs of a geometry."""
    window_d, window_h, window_w = geometry.window3
    return dict(WINDOW_D=window_d, WINDOW_H=window_h, WINDOW_W=window_w)


def has_padding(geometry) -> bool:
    """Whether any window slot is a padding token (the input is not a multiple of the window on some axis); the
    kernels compile the pad-vector select out when not."""
    return geometry.has_padding


@triton.jit
def _unroll(rolled, roll_len, roll):
    """Unrolled position of rolled position ``rolled`` < roll_len."""
    p = rolled + roll
    return tl.where(p >= roll_len, p - roll_len, p)


@triton.jit
def window_token_map(t, w, height, width, roll_len_h, roll_len_w, roll_h, roll_w, windows_per_row, windows_per_image,
                     depth, roll_len_d, roll_d, windows_per_plane, WINDOW_D: tl.constexpr, WINDOW_H: tl.constexpr,
                     WINDOW_W: tl.constexpr):
    """(row, real, padded) of tokens t (< WINDOW_D·WINDOW_H·WINDOW_W is in the window) of windows w (scalar or
    block), int32.

    row:    index of the token in the flattened (B·D·H·W) input, widened to int64 for element offsets; meaningful
            only where ``real`` (the launchers check that token and window-slot counts fit in int32)
    real:   the token exists in the input
    padded: the token is a padding position of the window (its q/k/v are the pad vector)
    """
    PLANE: tl.constexpr = WINDOW_H * WINDOW_W
    b = w // windows_per_image
    in_image = w % windows_per_image
    if WINDOW_D == 1:
        in_plane = in_image
        t_plane = t
    else:
        in_plane = in_image % windows_per_plane
        t_plane = t % PLANE
    rolled_y = (in_plane // windows_per_row) * WINDOW_H + t_plane // WINDOW_W
    rolled_x = (in_plane % windows_per_row) * WINDOW_W + t % WINDOW_W
    y = _unroll(rolled_y, roll_len_h, roll_h)
    x = _unroll(rolled_x, roll_len_w, roll_w)
    in_window = t < WINDOW_D * PLANE
    inside = (rolled_y < roll_len_h) & (rolled_x < roll_len_w) & (y < height) & (x < width)
    if WINDOW_D == 1:
        row = ((b * height + y) * width + x).to(tl.int64)
    else:
        rolled_z = (in_image // windows_per_plane) * WINDOW_D + t // PLANE
        z = _unroll(rolled_z, roll_len_d, roll_d)
        inside = inside & (rolled_z < roll_len_d) & (z < depth)
        row = (((b * depth + z) * height + y) * width + x).to(tl.int64)
    return row, in_window & inside, in_window & (inside == 0)


@triton.jit
def window_class(w, windows_per_row, windows_per_image, windows_per_plane, HAS_SHIFT: tl.constexpr,
                 WINDOW_D: tl.constexpr):
    """Score-table class of window w: 2·(in the last window row) + (in the last window column), plus 4·(in the last
    window plane) when WINDOW_D > 1; 0 unshifted."""
    if HAS_SHIFT:
        in_image = w % windows_per_image
        if WINDOW_D == 1:
            last_row = (in_image // windows_per_row) == (windows_per_image // windows_per_row - 1)
            last_col = (in_image % windows_per_row) == (windows_per_row - 1)
            cls = last_row.to(tl.int32) * 2 + last_col.to(tl.int32)
        else:
            in_plane = in_image % windows_per_plane
            last_plane = (in_image // windows_per_plane) == (windows_per_image // windows_per_plane - 1)
            last_row = (in_plane // windows_per_row) == (windows_per_plane // windows_per_row - 1)
            last_col = (in_plane % windows_per_row) == (windows_per_row - 1)
            cls = (last_plane.to(tl.int32) * 2 + last_row.to(tl.int32)) * 2 + last_col.to(tl.int32)
    else:
        cls = 0
    return cls


@triton.jit
def _roll_back(y, roll_len, roll):
    """Rolled position of unrolled position y < roll_len."""
    p = y - roll
    return tl.where(p < 0, p + roll_len, p)


@triton.jit
def map_token_to_slot(row, height, width, roll_len_h, roll_len_w, roll_h, roll_w, windows_per_row, windows_per_image,
                      depth, roll_len_d, roll_d, windows_per_plane, WINDOW_D: tl.constexpr, WINDOW_H: tl.constexpr,
                      WINDOW_W: tl.constexpr):
    """Inverse map: flattened (B·D·H·W) token index (int32) -> flattened (B·nW·N) window slot (int64)."""
    x = row % width
    y = (row // width) % height
    if WINDOW_D == 1:
        b = row // (width * height)
        rolled_y = _roll_back(y, roll_len_h, roll_h)
        rolled_x = _roll_back(x, roll_len_w, roll_w)
        window = b * windows_per_image + (rolled_y // WINDOW_H) * windows_per_row + rolled_x // WINDOW_W
        slot = window * (WINDOW_H * WINDOW_W) + (rolled_y % WINDOW_H) * WINDOW_W + rolled_x % WINDOW_W
    else:
        planes = row // (width * height)
        b = planes // depth
        rolled_z = _roll_back(planes % depth, roll_len_d, roll_d)
        rolled_y = _roll_back(y, roll_len_h, roll_h)
        rolled_x = _roll_back(x, roll_len_w, roll_w)
        window = (b * windows_per_image + (rolled_z // WINDOW_D) * windows_per_plane
                  + (rolled_y // WINDOW_H) * windows_per_row + rolled_x // WINDOW_W)
        token = ((rolled_z % WINDOW_D) * WINDOW_H + rolled_y % WINDOW_H) * WINDOW_W + rolled_x % WINDOW_W
        slot = window * (WINDOW_D * WINDOW_H * WINDOW_W) + token
    return slot.to(tl.int64)
