// What the CUDA attention kernels run, stated once. The kernels and their launchers, the torch-facing checks
// (ops_cuda.cpp), the Python backend (swin_kernels/ops/cuda.py, through the op cuda_limits() of limits_op.h) and
// tools/cuda_check.py all read these; none of them keeps a copy. Plain C++: the CPU-only build compiles it too.
#pragma once

#include <stdint.h>

#include "attention_smem.h"

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
