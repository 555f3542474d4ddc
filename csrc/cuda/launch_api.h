// Host interface of the CUDA kernels: plain pointers, sizes and a stream, so the kernel files (.cu) include no
// torch header and ops_cuda.cpp (the torch-facing ops) includes no CUDA device code. What the kernels run
// (tokens, head_dim, shared memory) is in kernel_limits.h.
#pragma once

#include <cuda_runtime_api.h>
#include <stdint.h>

#include "../index_maps.h"
#include "kernel_limits.h"

namespace swin_kernels {
namespace cuda {

enum class DType { kFloat32, kFloat16, kBFloat16 };

struct AttentionForwardArgs {
  DType dtype;
  const void* qkv;      // (B, [D,] H, W, 3C)
  const void* pad_qkv;  // (3C,) or null for zeros
  const void* bias;     // (heads, N, N) or null
  void* out;            // (B, [D,] H, W, C)
  float* lse;           // (B*nW, heads, N)
  int64_t batch;
  int32_t heads, head_dim;
  float scale;
  maps::WindowGrid grid;
};

struct AttentionBackwardArgs {
  DType dtype;
  const void* grad_out;  // (B, [D,] H, W, C)
  const void* qkv;
  const void* pad_qkv;
  const void* bias;
  const float* lse;
  void* grad_qkv;        // (B, [D,] H, W, 3C)
  void* grad_pad;        // (3C,)
  void* grad_bias;       // (heads, N, N)
  float* pad_partials;   // (chunks, 3C) workspace
  float* bias_partials;  // (chunks, heads, N, N) workspace
  int64_t batch;
  int32_t heads, head_dim;
  float scale;
  maps::WindowGrid grid;
  int64_t windows_per_chunk, chunks;
};

// The backward cuts the windows into chunks; each (chunk, head) block writes its own partial sums of grad_bias and
// grad_pad_qkv, which a second kernel adds up in a fixed order: deterministic, no atomics.
inline int64_t backward_windows_per_chunk(int64_t windows) { return (windows + 1023) / 1024; }

cudaError_t launch_attention_forward(const AttentionForwardArgs& args, cudaStream_t stream);
// The flash-style forward (attention_flash_forward.cu): fp16/bf16 within flash_forward_supported (kernel_limits.h),
// cudaErrorInvalidValue otherwise. Same arguments and outputs (out, lse) as launch_attention_forward.
cudaError_t launch_attention_flash_forward(const AttentionForwardArgs& args, cudaStream_t stream);

cudaError_t launch_attention_backward(const AttentionBackwardArgs& args, cudaStream_t stream);
// The flash-style backward (attention_flash_backward.cu): fp16/bf16 within flash_backward_supported
// (kernel_limits.h), 16-byte aligned pointers, windows_per_chunk = flash::windows_per_block(...) and
// chunks = flash_backward_chunks(...) (one d_bias partial per block); cudaErrorInvalidValue otherwise.
cudaError_t launch_attention_flash_backward(const AttentionBackwardArgs& args, cudaStream_t stream);
// out[e] (size entries, element type dtype) = the sum over chunks of partials[chunk, e] in chunk order
// (attention_backward.cu's reduce_partials).
cudaError_t launch_reduce_partials(DType dtype, const float* partials, int64_t chunks, int64_t size, void* out,
                                   cudaStream_t stream);

// Pure data movement of rows of row_bytes bytes (any dtype).
cudaError_t launch_window_partition(const void* x, void* windows, int64_t batch, int64_t row_bytes,
                                    const maps::WindowGrid& grid, cudaStream_t stream);
cudaError_t launch_window_reverse(const void* windows, void* x, int64_t batch, int64_t row_bytes,
                                  const maps::WindowGrid& grid, cudaStream_t stream);

}  // namespace cuda
}  // namespace swin_kernels
