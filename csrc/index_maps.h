// Index arithmetic of (shifted) window attention, shared by the CPU and CUDA kernels.
//
// A (B, H, W, C) map is padded at the bottom/right to (Hp, Wp), multiples of the window M, rolled by (-s, -s)
// and cut into nW = (Hp/M)(Wp/M) windows of N = M*M tokens: windows row-major over the grid, tokens row-major
// inside a window. The kernels never build the padded, rolled or partitioned copies; they only ask
//   * which pixel of the original map token t of window w is (or that it is padding),
//   * which shift region token t lies in (tokens of different regions get the -100 mask),
//   * the relative position index of a token pair (into a ((2T-1)^2, heads) bias table).
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

struct WindowGrid {
  int64_t height, width;                // the unpadded map
  int64_t padded_height, padded_width;  // multiples of window
  int64_t windows_per_row;              // windows along the width
  int64_t windows_per_image;            // nW
  int32_t window, shift, tokens;        // M, s, N = M*M
};

SWIN_HOST_DEVICE int64_t round_up(int64_t value, int64_t multiple) {
  return (value + multiple - 1) / multiple * multiple;
}

SWIN_HOST_DEVICE WindowGrid make_grid(int64_t height, int64_t width, int32_t window, int32_t shift) {
  WindowGrid g;
  g.height = height;
  g.width = width;
  g.padded_height = round_up(height, window);
  g.padded_width = round_up(width, window);
  g.windows_per_row = g.padded_width / window;
  g.windows_per_image = (g.padded_height / window) * g.windows_per_row;
  g.window = window;
  g.shift = shift;
  g.tokens = window * window;
  return g;
}

// The roll by -s moves padded position (p + s) mod L to p; this undoes it (0 <= p < L, 0 <= s < M <= L).
SWIN_HOST_DEVICE int64_t unrolled_position(int64_t rolled, int32_t shift, int64_t length) {
  const int64_t p = rolled + shift;
  return p >= length ? p - length : p;
}

// Row / column of token t of window w in the rolled, padded map.
SWIN_HOST_DEVICE int64_t rolled_row(const WindowGrid& g, int64_t window_index, int32_t token) {
  return (window_index / g.windows_per_row) * g.window + token / g.window;
}
SWIN_HOST_DEVICE int64_t rolled_col(const WindowGrid& g, int64_t window_index, int32_t token) {
  return (window_index % g.windows_per_row) * g.window + token % g.window;
}

// Pixel y*W + x of the original map that token t of window w (within one image) holds, or -1 for padding.
// Each pixel is held by exactly one token, so writes through this map never collide.
SWIN_HOST_DEVICE int64_t token_pixel(const WindowGrid& g, int64_t window_index, int32_t token) {
  const int64_t y = unrolled_position(rolled_row(g, window_index, token), g.shift, g.padded_height);
  const int64_t x = unrolled_position(rolled_col(g, window_index, token), g.shift, g.padded_width);
  return (y < g.height && x < g.width) ? y * g.width + x : -1;
}

// Shift region along one axis of padded length L: [0, L-M) -> 0, [L-M, L-s) -> 1, [L-s, L) -> 2 (all 0 unshifted).
SWIN_HOST_DEVICE int32_t axis_region(int64_t rolled, int64_t length, int32_t window, int32_t shift) {
  if (shift == 0) return 0;
  return (rolled >= length - window ? 1 : 0) + (rolled >= length - shift ? 1 : 0);
}

// Region id (0..8) of token t of window w; two tokens attend freely only when their ids are equal.
SWIN_HOST_DEVICE int32_t token_region(const WindowGrid& g, int64_t window_index, int32_t token) {
  return axis_region(rolled_row(g, window_index, token), g.padded_height, g.window, g.shift) * 3 +
         axis_region(rolled_col(g, window_index, token), g.padded_width, g.window, g.shift);
}

// Only windows in the last grid row or column can hold tokens of more than one region.
SWIN_HOST_DEVICE bool window_is_masked(const WindowGrid& g, int64_t window_index) {
  if (g.shift == 0) return false;
  const int64_t rows = g.windows_per_image / g.windows_per_row;
  return window_index / g.windows_per_row == rows - 1 || window_index % g.windows_per_row == g.windows_per_row - 1;
}

// Relative position index of tokens (i, j) of an M-window into a ((2T-1)^2, heads) table, T >= M:
// (drow + T-1) * (2T-1) + (dcol + T-1), drow/dcol = position of i minus position of j.
SWIN_HOST_DEVICE int32_t relative_position_index(int32_t window, int32_t table_window, int32_t i, int32_t j) {
  const int32_t d_row = i / window - j / window + table_window - 1;
  const int32_t d_col = i % window - j % window + table_window - 1;
  return d_row * (2 * table_window - 1) + d_col;
}

}  // namespace maps
}  // namespace swin_kernels
