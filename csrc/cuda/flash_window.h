// Window bookkeeping of the flash-style kernels (attention_flash_forward.cu), built from the shared maps of
// csrc/index_maps.h (unrolled_position, axis_region, the grid) and tested against them on the host
// (csrc/tests/test_mma_layout.cpp): the block's window comes from the launch grid (blockIdx.y = image), so a
// window index within an image fits 32 bits (it is below gridDim.x) and its origin takes two 32-bit divisions; a
// token's pixel and region share one decomposition of the token index.
#pragma once

#include <stdint.h>

#include "../index_maps.h"

namespace swin_kernels {
namespace cuda {
namespace flash {

// A window's place in the image's grid of windows (plane, row, column of windows): 32-bit, as the window index
// within the image (below gridDim.x) is.
struct WindowCell {
  int32_t plane, row, col;
};

// The cell of window `window` (an index within the image below 2^31): two 32-bit divisions.
SWIN_HOST_DEVICE WindowCell window_cell(const maps::WindowGrid& g, int32_t window) {
  const int32_t per_plane = static_cast<int32_t>(g.windows_per_plane), per_row = static_cast<int32_t>(g.windows_per_row);
  const int32_t plane = window / per_plane, in_plane = window - plane * per_plane;
  const int32_t row = in_plane / per_row;
  return {plane, row, in_plane - row * per_row};
}

// The next window's cell (index + 1), without divisions (a block runs consecutive windows of one image).
SWIN_HOST_DEVICE WindowCell next_cell(const maps::WindowGrid& g, WindowCell cell) {
  if (++cell.col == g.windows_per_row) {
    cell.col = 0;
    if (++cell.row == g.windows_per_plane / g.windows_per_row) {
      cell.row = 0;
      ++cell.plane;
    }
  }
  return cell;
}

// maps::window_origin of a cell.
SWIN_HOST_DEVICE maps::WindowOrigin cell_origin(const maps::WindowGrid& g, const WindowCell& cell) {
  return {static_cast<int64_t>(cell.plane) * g.planes.window, static_cast<int64_t>(cell.row) * g.rows.window,
          static_cast<int64_t>(cell.col) * g.cols.window};
}

// A token's offsets inside a window of at most 2^10 tokens in 10 bits each (one register for the block's lifetime).
SWIN_HOST_DEVICE uint32_t pack_offset(const maps::TokenOffset& t) {
  return static_cast<uint32_t>(t.plane) | static_cast<uint32_t>(t.row) << 10 | static_cast<uint32_t>(t.col) << 20;
}
SWIN_HOST_DEVICE maps::TokenOffset unpack_offset(uint32_t packed) {
  return {static_cast<int32_t>(packed & 1023u), static_cast<int32_t>(packed >> 10 & 1023u),
          static_cast<int32_t>(packed >> 20 & 1023u)};
}

// Pixel within the image (maps::token_pixel: -1 for padding) and region id (maps::token_region) of the token at
// offset t (maps::token_offset, the same in every window: computed once per block) of the window at origin o.
struct TokenSlot {
  int64_t pixel;
  int32_t region;
};

SWIN_HOST_DEVICE TokenSlot token_slot(const maps::WindowGrid& g, const maps::WindowOrigin& o,
                                      const maps::TokenOffset& t) {
  const int64_t p = o.plane + t.plane, r = o.row + t.row, c = o.col + t.col;
  const int64_t z = maps::unrolled_position(g.planes, p), y = maps::unrolled_position(g.rows, r),
                x = maps::unrolled_position(g.cols, c);
  const int32_t region = (maps::axis_region(g.planes, p) * 3 + maps::axis_region(g.rows, r)) * 3 +
                         maps::axis_region(g.cols, c);
  return {(z >= 0 && y >= 0 && x >= 0) ? (z * g.height + y) * g.width + x : -1, region};
}

// Windows a block of the flash forward runs, one after the other with the head's bias tile staged once: the most
// (up to kMaxWindowsPerBlock) that still leave at least kMinBlocks blocks, and never more than an image holds.
constexpr int kMaxWindowsPerBlock = 16;
constexpr int64_t kMinBlocks = 1024;
SWIN_HOST_DEVICE int32_t windows_per_block(int64_t batch, int64_t windows_per_image, int64_t heads) {
  int32_t w = kMaxWindowsPerBlock;
  while (w > 1 && (w > windows_per_image ||
                   batch * heads * ((windows_per_image + w - 1) / w) < kMinBlocks))
    w /= 2;
  return w;
}

}  // namespace flash
}  // namespace cuda
}  // namespace swin_kernels
