// What the CUDA attention kernels run, stated once. The kernels and their launchers, the torch-facing checks
// (ops_cuda.cpp), the Python backend (swin_kernels/ops/cuda.py, through the op cuda_limits() of limits_op.h) and
// tools/cuda_check.py all read these; none of them keeps a copy. Plain C++: the CPU-only build compiles it too.
#pragma once

#include <stdint.h>

#include <cstdlib>
#include <cstring>

#include "attention_smem.h"
#include "flash_window.h"
#include "mma_layout.h"

namespace swin_kernels {
namespace cuda {

// One window's N = Md*Mh*Mw tokens fit the kTile-token tile; head_dim is a multiple of the 16-wide tensor-core tile
// up to 64 (each supported head_dim is its own instantiation of the kernels, dispatched in the launchers).
constexpr int kMaxTokens = kTile;
constexpr int kHeadDimMultiple = 16;
constexpr int kMaxHeadDim = 64;
// bf16 tensor-core MMA needs compute capability 8.0 (10 * major + minor).
constexpr int kBf16MinCapability = 80;
// Threads per block of the attention kernels (4 warps).
constexpr int kThreads = 128;

SWIN_HOST_DEVICE bool head_dim_supported(int64_t head_dim) {
  return head_dim >= kHeadDimMultiple && head_dim % kHeadDimMultiple == 0 && head_dim <= kMaxHeadDim;
}

SWIN_HOST_DEVICE bool attention_supported(int64_t tokens, int64_t head_dim) {
  return tokens >= 1 && tokens <= kMaxTokens && head_dim_supported(head_dim);
}

// Dynamic shared memory of the forward or backward attention kernel for an element size (2: fp16/bf16, 4: fp32)
// and head_dim (the layout of attention_smem.h).
SWIN_HOST_DEVICE int64_t attention_smem_bytes(int64_t element_bytes, int64_t head_dim, bool backward) {
  return attention_smem(element_bytes, head_dim, backward).bytes;
}

// The flash-style forward (attention_flash_forward.cu, selected by SWIN_KERNELS_CUDA_KERNELS=flash): fp16/bf16, the
// same windows and head_dims; fp32 calls run the verified kernel. Its dynamic shared memory: q, k, v as padded
// kTile x D tiles (mma_layout.h), the head's bias as a kTile x (kTile + 8) fp32 tile, the kTile pixels (int64) and
// region ids (int).
SWIN_HOST_DEVICE bool flash_forward_supported(int64_t element_bytes, int64_t tokens, int64_t head_dim) {
  return element_bytes == 2 && attention_supported(tokens, head_dim);
}
// Both flash kernels index the windows of an image in 32 bits (flash_window.h) and the images by gridDim.y x
// gridDim.z (up to 65535 x 65535).
SWIN_HOST_DEVICE bool flash_grid_supported(int64_t batch, const maps::WindowGrid& grid) {
  return grid.windows_per_image <= 0x7fffffff && batch <= int64_t{65535} * 65535;
}
SWIN_HOST_DEVICE int64_t flash_forward_smem_bytes(int64_t head_dim) {
  return 3 * 2 * static_cast<int64_t>(mma::smem_tile_elements(kTile, static_cast<int>(head_dim))) +
         kTile * static_cast<int64_t>(mma::bias_pitch(kTile)) * 4 + kTile * 8 + kTile * 4;
}

// The flash-style backward (attention_flash_backward.cu): fp16/bf16 maps without padding tokens (every axis a
// multiple of its window; the verified kernel sums the padding tokens' gradients into grad_pad_qkv), the same windows
// and head_dims. One d_bias partial per block: batch x (runs of windows per image) chunks.
SWIN_HOST_DEVICE bool flash_backward_supported(int64_t element_bytes, const maps::WindowGrid& grid, int64_t head_dim) {
  const bool padded = grid.planes.padded != grid.planes.length || grid.rows.padded != grid.rows.length ||
                      grid.cols.padded != grid.cols.length;
  return element_bytes == 2 && !padded && attention_supported(grid.tokens, head_dim);
}
// Dynamic shared memory: q, k, v, dO as padded kTile x D tiles, P and dS as padded kTile x kTile 16-bit tiles, the
// head's bias tile (fp32), the kTile pixels (int64), region ids (int) and lse (float).
SWIN_HOST_DEVICE int64_t flash_backward_smem_bytes(int64_t head_dim) {
  return 4 * 2 * static_cast<int64_t>(mma::smem_tile_elements(kTile, static_cast<int>(head_dim))) +
         2 * 2 * static_cast<int64_t>(kTile) * mma::score_pitch(kTile) +
         kTile * static_cast<int64_t>(mma::bias_pitch(kTile)) * 4 + kTile * 8 + kTile * 4 + kTile * 4;
}
SWIN_HOST_DEVICE int64_t flash_backward_chunks(int64_t batch, int64_t windows_per_image, int64_t heads) {
  const int64_t per_block = flash::windows_per_block(batch, windows_per_image, heads);
  return batch * ((windows_per_image + per_block - 1) / per_block);
}

// Which attention kernels a call runs, from the environment variable SWIN_KERNELS_CUDA_KERNELS: unset, empty or
// "verified": the kernels a GPU has verified (attention_forward.cu, attention_backward.cu); "flash": the flash-style
// forward and backward where they run (flash_forward_supported, flash_backward_supported, 16-byte aligned pointers),
// the verified kernels elsewhere. kUnknown for any other value (the op says so).
// The flash kernels become the default once a GPU run passes them.
enum class KernelVariant { kVerified, kFlash, kUnknown };
inline KernelVariant kernel_variant(const char* setting) {
  if (setting == nullptr || setting[0] == '\0' || std::strcmp(setting, "verified") == 0) return KernelVariant::kVerified;
  if (std::strcmp(setting, "flash") == 0) return KernelVariant::kFlash;
  return KernelVariant::kUnknown;
}
inline KernelVariant kernel_variant() { return kernel_variant(std::getenv("SWIN_KERNELS_CUDA_KERNELS")); }

// cudaDevAttrMaxSharedMemoryPerBlockOptin by compute capability (10 * major + minor): the one architecture table.
// Python uses it where torch's device properties lack shared_memory_per_block_optin (torch < 2.7);
// tools/cuda_check.py checks every configuration against the architectures it compiles for.
struct SmemOptin {
  int capability;
  int64_t bytes;
};
constexpr SmemOptin kSmemOptin[] = {{80, 163 * 1024}, {86, 99 * 1024},  {87, 163 * 1024}, {89, 99 * 1024},
                                    {90, 227 * 1024}, {100, 227 * 1024}, {120, 99 * 1024}};
constexpr int64_t kSmemOptinOther = 99 * 1024;  // a capability not in the table: the smallest in it

inline int64_t smem_optin(int capability) {
  for (const SmemOptin& entry : kSmemOptin)
    if (entry.capability == capability) return entry.bytes;
  return kSmemOptinOther;
}

}  // namespace cuda
}  // namespace swin_kernels
