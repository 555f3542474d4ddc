// Index arithmetic of (shifted) window attention, shared by the CPU and CUDA kernels.
//
// A (B, H, W, C) map or a (B, D, H, W, C) volume is cut into nW = (Dp/Md)(Hp/Mh)(Wp/Mw) windows of N = Md*Mh*Mw
// tokens after a cyclic roll by (-sd, -sh, -sw) and zero padding at the far end of each axis to (Dp, Hp, Wp),
// multiples of the window: windows row-major over the grid (planes, rows, columns), tokens row-major inside a
// window. A map is the volume of depth 1 (Md = 1, sd = 0): every function below then reduces exactly to its 2-D form. Pad and roll come in either order (swin_kernels/geometry.py):
//   pad, then roll (official, HF, torchvision): the roll acts on the whole padded axis, L = P (padded length);
//   roll, then pad (timm): the roll acts on the unpadded axis only, L = the map's length, the rest is padding.
// Along an axis, rolled position p < L holds unrolled position (p + roll) mod L with roll = s mod L; p >= L is
// padding. The kernels never build the padded, rolled or partitioned copies; they only ask
//   * which pixel of the original map token t of window w is (or that it is padding),
//   * which shift region token t lies in (tokens of different regions get the -100 mask; the regions are laid
//     out on the padded grid in both orders: [0, P-M), [P-M, P-s), [P-s, P), one region when s = 0; 3 per
//     shifted axis, so up to 9 in 2-D and 27 in 3-D),
//   * the relative position index of a token pair (into a ((2Td-1)(2Th-1)(2Tw-1), heads) bias table).
// All functions are pure and 64-bit where a product of sizes can exceed 2^31.
#pragma once

#include <stdint.h>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define SWIN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SWIN_HOST_DEVICE inline
#endif

namespace swin_kernels {
namespace maps {

// Additive mask between tokens of different shift regions (the official implementation's value).
constexpr float kShiftMaskValue = -100.0f;

// One axis of the geometry.
struct Axis {
  int64_t length;       // the unpadded map's size
  int64_t padded;       // rounded up to a multiple of window
  int64_t roll_length;  // positions the roll acts on: padded (pad, then roll) or length (roll, then pad)
  int64_t roll;         // shift mod roll_length
  int32_t window, shift;
};

struct WindowGrid {
  Axis planes, rows, cols;              // depth (length 1, window 1 for a 2-D map), height, width
  int64_t depth, height, width;         // planes.length, rows.length, cols.length
  int64_t padded_height, padded_width;  // rows.padded, cols.padded
  int64_t windows_per_row;              // windows along the width
  int64_t windows_per_plane;            // windows in one plane of windows (a whole 2-D map)
  int64_t windows_per_image;            // nW
  int64_t pixels;                       // D * H * W: tokens of one image
  int32_t tokens;                       // N = Md * Mh * Mw
  int32_t plane_tokens;                 // Mh * Mw: tokens of a window in one plane
};

SWIN_HOST_DEVICE int64_t round_up(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

SWIN_HOST_DEVICE Axis make_axis(int64_t length, int32_t window, int32_t shift, bool roll_before_pad) {
  Axis a;
  a.length = length;
  a.padded = round_up(length, window);
  a.roll_length = roll_before_pad ? length : a.padded;
  a.roll = shift % a.roll_length;
  a.window = window;
  a.shift = shift;
  return a;
}

// A (D, H, W) volume with window (Md, Mh, Mw) and shift (sd, sh, sw).
SWIN_HOST_DEVICE WindowGrid make_grid(int64_t depth, int64_t height, int64_t width, int32_t window_d, int32_t window_h,
                                      int32_t window_w, int32_t shift_d, int32_t shift_h, int32_t shift_w,
                                      bool roll_before_pad) {
  WindowGrid g;
  g.planes = make_axis(depth, window_d, shift_d, roll_before_pad);
  g.rows = make_axis(height, window_h, shift_h, roll_before_pad);
  g.cols = make_axis(width, window_w, shift_w, roll_before_pad);
  g.depth = depth;
  g.height = height;
  g.width = width;
  g.padded_height = g.rows.padded;
  g.padded_width = g.cols.padded;
  g.windows_per_row = g.cols.padded / window_w;
  g.windows_per_plane = (g.rows.padded / window_h) * g.windows_per_row;
  g.windows_per_image = (g.planes.padded / window_d) * g.windows_per_plane;
  g.pixels = depth * height * width;
  g.plane_tokens = window_h * window_w;
  g.tokens = window_d * g.plane_tokens;
  return g;
}

// An (H, W) map: the volume of depth 1.
SWIN_HOST_DEVICE WindowGrid make_grid(int64_t height, int64_t width, int32_t window_h, int32_t window_w,
                                      int32_t shift_h, int32_t shift_w, bool roll_before_pad) {
  return make_grid(1, height, width, 1, window_h, window_w, 0, shift_h, shift_w, roll_before_pad);
}

// The square, pad-then-roll geometry of the official code.
SWIN_HOST_DEVICE WindowGrid make_grid(int64_t height, int64_t width, int32_t window, int32_t shift) {
  return make_grid(height, width, window, window, shift, shift, false);
}

// Unrolled position along an axis of rolled position p (0 <= p < padded), or -1 for padding.
SWIN_HOST_DEVICE int64_t unrolled_position(const Axis& a, int64_t rolled) {
  if (rolled >= a.roll_length) return -1;  // roll, then pad: the padding is never rolled
  const int64_t p = rolled + a.roll;
  const int64_t y = p >= a.roll_length ? p - a.roll_length : p;
  return y < a.length ? y : -1;  // pad, then roll: rolled padding
}

// Rolled position of unrolled position y < length (the inverse of unrolled_position).
SWIN_HOST_DEVICE int64_t rolled_position(const Axis& a, int64_t y) {
  const int64_t p = y - a.roll;
  return p < 0 ? p + a.roll_length : p;
}

// Where window w (within one image) starts in the rolled, padded volume: computed once per window, so that each
// token's position is then 32-bit arithmetic on its offsets inside the window (the 64-bit divisions of the window
// index happen here only).
struct WindowOrigin {
  int64_t plane, row, col;
};

SWIN_HOST_DEVICE WindowOrigin window_origin(const WindowGrid& g, int64_t window_index) {
  const int64_t window_plane = window_index / g.windows_per_plane;
  const int64_t in_plane = window_index - window_plane * g.windows_per_plane;
  const int64_t window_row = in_plane / g.windows_per_row;
  const int64_t window_col = in_plane - window_row * g.windows_per_row;
  return {window_plane * g.planes.window, window_row * g.rows.window, window_col * g.cols.window};
}

// Offsets (plane, row, column) of token t inside its window: t = (plane * Mh + row) * Mw + column.
struct TokenOffset {
  int32_t plane, row, col;
};

SWIN_HOST_DEVICE TokenOffset token_offset(const WindowGrid& g, int32_t token) {
  const int32_t plane = token / g.plane_tokens;
  const int32_t in_plane = token - plane * g.plane_tokens;
  const int32_t row = in_plane / g.cols.window;
  return {plane, row, in_plane - row * g.cols.window};
}

// Pixel (z*H + y)*W + x of the original volume (y*W + x of a map) that token t of the window at origin o holds, or
// -1 for padding. Each pixel is held by exactly one token, so writes through this map never collide.
SWIN_HOST_DEVICE int64_t token_pixel(const WindowGrid& g, const WindowOrigin& o, int32_t token) {
  const TokenOffset t = token_offset(g, token);
  const int64_t z = unrolled_position(g.planes, o.plane + t.plane);
  const int64_t y = unrolled_position(g.rows, o.row + t.row);
  const int64_t x = unrolled_position(g.cols, o.col + t.col);
  return (z >= 0 && y >= 0 && x >= 0) ? (z * g.height + y) * g.width + x : -1;
}

// The same for window w given by its index (within one image).
SWIN_HOST_DEVICE int64_t token_pixel(const WindowGrid& g, int64_t window_index, int32_t token) {
  return token_pixel(g, window_origin(g, window_index), token);
}

// (window index within the image, token) that holds pixel (z*H + y)*W + x: the inverse of token_pixel.
SWIN_HOST_DEVICE void pixel_token(const WindowGrid& g, int64_t pixel, int64_t* window_index, int32_t* token) {
  const int64_t plane_pixels = g.height * g.width;
  const int64_t in_plane = pixel % plane_pixels;
  const int64_t p = rolled_position(g.planes, pixel / plane_pixels);
  const int64_t r = rolled_position(g.rows, in_plane / g.width), c = rolled_position(g.cols, in_plane % g.width);
  *window_index = (p / g.planes.window) * g.windows_per_plane + (r / g.rows.window) * g.windows_per_row +
                  c / g.cols.window;
  *token = static_cast<int32_t>(((p % g.planes.window) * g.rows.window + r % g.rows.window) * g.cols.window +
                                c % g.cols.window);
}

// Shift region along one padded axis: [0, P-M) -> 0, [P-M, P-s) -> 1, [P-s, P) -> 2 (all 0 unshifted).
SWIN_HOST_DEVICE int32_t axis_region(const Axis& a, int64_t rolled) {
  if (a.shift == 0) return 0;
  return (rolled >= a.padded - a.window ? 1 : 0) + (rolled >= a.padded - a.shift ? 1 : 0);
}

// Region id (0..26; 0..8 for a 2-D map) of token t of the window at origin o (or of window w given by its index);
// two tokens attend freely only when their ids are equal.
SWIN_HOST_DEVICE int32_t token_region(const WindowGrid& g, const WindowOrigin& o, int32_t token) {
  const TokenOffset t = token_offset(g, token);
  return (axis_region(g.planes, o.plane + t.plane) * 3 + axis_region(g.rows, o.row + t.row)) * 3 +
         axis_region(g.cols, o.col + t.col);
}
SWIN_HOST_DEVICE int32_t token_region(const WindowGrid& g, int64_t window_index, int32_t token) {
  return token_region(g, window_origin(g, window_index), token);
}

// Only windows in the last grid plane (depth shifted), row (rows shifted) or column (columns shifted) can hold
// several regions.
SWIN_HOST_DEVICE bool window_is_masked(const WindowGrid& g, int64_t window_index) {
  const int64_t grid_planes = g.windows_per_image / g.windows_per_plane;
  const int64_t grid_rows = g.windows_per_plane / g.windows_per_row;
  const int64_t in_plane = window_index % g.windows_per_plane;
  return (g.planes.shift > 0 && window_index / g.windows_per_plane == grid_planes - 1) ||
         (g.rows.shift > 0 && in_plane / g.windows_per_row == grid_rows - 1) ||
         (g.cols.shift > 0 && window_index % g.windows_per_row == g.windows_per_row - 1);
}

// Relative position index of tokens (i, j) of an (Mh, Mw) window into a ((2Th-1)(2Tw-1), heads) table, T >= M:
// (drow + Th-1) * (2Tw-1) + (dcol + Tw-1), drow/dcol = position of i minus position of j.
SWIN_HOST_DEVICE int32_t relative_position_index(int32_t window_h, int32_t window_w, int32_t table_h,
                                                 int32_t table_w, int32_t i, int32_t j) {
  (void)window_h;
  const int32_t d_row = i / window_w - j / window_w + table_h - 1;
  const int32_t d_col = i % window_w - j % window_w + table_w - 1;
  return d_row * (2 * table_w - 1) + d_col;
}

// The 3-D index into a ((2Td-1)(2Th-1)(2Tw-1), heads) table of tokens (i, j) of an (Md, Mh, Mw) window:
// ((dplane + Td-1) * (2Th-1) + (drow + Th-1)) * (2Tw-1) + (dcol + Tw-1). With Md = Td = 1 it is the 2-D index.
SWIN_HOST_DEVICE int32_t relative_position_index(int32_t window_d, int32_t window_h, int32_t window_w, int32_t table_d,
                                                 int32_t table_h, int32_t table_w, int32_t i, int32_t j) {
  (void)window_d;
  const int32_t plane = window_h * window_w;
  const int32_t d_plane = i / plane - j / plane + table_d - 1;
  return d_plane * (2 * table_h - 1) * (2 * table_w - 1) +
         relative_position_index(window_h, window_w, table_h, table_w, i % plane, j % plane);
}

}  // namespace maps
}  // namespace swin_kernels
