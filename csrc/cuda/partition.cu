// window_partition / window_reverse on CUDA: rows of C elements moved through maps::token_pixel, in the widest
// unit (16, 8, 4, 2 or 1 bytes) that the row size and both pointers allow. Grid-stride loops, 64-bit indices.
#include <stdint.h>

#include "../index_maps.h"
#include "launch_api.h"

namespace swin_kernels {
namespace cuda {
namespace {

// One thread per unit of the (B*nW, N, row) windows tensor; reverse=false gathers (padding -> 0), reverse=true
// scatters real tokens back (each pixel is held by exactly one token, so writes never collide).
template <typename Unit, bool kReverse>
__global__ void move_rows_kernel(const Unit* src, Unit* dst, maps::WindowGrid g, int64_t total_rows, int64_t units) {
  const int64_t count = total_rows * units, image = g.pixels;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < count;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = idx / units, unit = idx % units;
    const int64_t bw = row / g.tokens, b = bw / g.windows_per_image;
    const int64_t pixel = maps::token_pixel(g, bw % g.windows_per_image, static_cast<int32_t>(row % g.tokens));
    if (kReverse) {
      if (pixel >= 0) dst[(b * image + pixel) * units + unit] = src[idx];
    } else {
      dst[idx] = pixel >= 0 ? src[(b * image + pixel) * units + unit] : Unit{};
    }
  }
}

template <bool kReverse, typename Unit>
cudaError_t launch_typed(const void* src, void* dst, int64_t rows, int64_t row_bytes, const maps::WindowGrid& g,
                         cudaStream_t stream) {
  const int64_t units = row_bytes / static_cast<int64_t>(sizeof(Unit)), count = rows * units;
  const int64_t blocks = (count + 255) / 256 < 65535 * 16 ? (count + 255) / 256 : 65535 * 16;
  move_rows_kernel<Unit, kReverse><<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
      static_cast<const Unit*>(src), static_cast<Unit*>(dst), g, rows, units);
  return cudaGetLastError();
}

template <bool kReverse>
cudaError_t launch(const void* src, void* dst, int64_t batch, int64_t row_bytes, const maps::WindowGrid& g,
                   cudaStream_t stream) {
  const int64_t rows = batch * g.windows_per_image * g.tokens;
  if (rows == 0 || row_bytes == 0) return cudaSuccess;
  const uint64_t alignment = static_cast<uint64_t>(row_bytes) | reinterpret_cast<uintptr_t>(src) |
                             reinterpret_cast<uintptr_t>(dst);
  if (alignment % 16 == 0) return launch_typed<kReverse, uint4>(src, dst, rows, row_bytes, g, stream);
  if (alignment % 8 == 0) return launch_typed<kReverse, uint2>(src, dst, rows, row_bytes, g, stream);
  if (alignment % 4 == 0) return launch_typed<kReverse, uint32_t>(src, dst, rows, row_bytes, g, stream);
  if (alignment % 2 == 0) return launch_typed<kReverse, uint16_t>(src, dst, rows, row_bytes, g, stream);
  return launch_typed<kReverse, uint8_t>(src, dst, rows, row_bytes, g, stream);
}

}  // namespace

cudaError_t launch_window_partition(const void* x, void* windows, int64_t batch, int64_t row_bytes,
                                    const maps::WindowGrid& grid, cudaStream_t stream) {
  return launch<false>(x, windows, batch, row_bytes, grid, stream);
}

cudaError_t launch_window_reverse(const void* windows, void* x, int64_t batch, int64_t row_bytes,
                                  const maps::WindowGrid& grid, cudaStream_t stream) {
  return launch<true>(windows, x, batch, row_bytes, grid, stream);
}

}  // namespace cuda
}  // namespace swin_kernels
