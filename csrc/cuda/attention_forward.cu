// Forward of (shifted) window attention on CUDA: one block per (window, head), 128 threads.
//
// The block gathers its window's q (scaled), k, v straight from the (B, H, W, 3C) map through maps::token_pixel
// (padding -> pad_qkv, tokens padded to 64 -> zeros) into shared memory, computes S = q k^T (tensor cores for
// fp16/bf16), adds bias and the shift mask (region ids from maps::token_region), takes the softmax in fp32 with
// one warp per row (saving lse = max + log(sum)), computes O = P v and writes it to (B, H, W, C) at the tokens'
// pixels. Offsets are 64-bit.
#include "attention_smem.h"
#include "block_ops.cuh"
#include "launch_api.h"

namespace swin_kernels {
namespace cuda {
namespace {

template <typename T>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(const AttentionForwardArgs args) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int d = args.head_dim, heads = args.heads, n = args.grid.tokens;
  const AttentionSmem layout = attention_smem(sizeof(T), d, false);
  T* q = reinterpret_cast<T*>(smem + layout.q);
  T* k = reinterpret_cast<T*>(smem + layout.k);
  T* v = reinterpret_cast<T*>(smem + layout.v);
  float* scores = reinterpret_cast<float*>(smem + layout.scores);
  T* probs = reinterpret_cast<T*>(smem + layout.probs);
  float* product = reinterpret_cast<float*>(smem + layout.product);
  int64_t* pixel = reinterpret_cast<int64_t*>(smem + layout.pixel);
  int* region = reinterpret_cast<int*>(smem + layout.region);

  const int64_t bw = blockIdx.x / heads;
  const int h = blockIdx.x % heads;
  const int64_t c = static_cast<int64_t>(heads) * d;
  const T* qkv = static_cast<const T*>(args.qkv);
  const T* pad = static_cast<const T*>(args.pad_qkv);
  const T* bias = static_cast<const T*>(args.bias);
  load_window(args.grid, bw, pixel, region);
  __syncthreads();
  load_qkv_tiles(qkv, pad, pixel, h, d, c, args.scale, q, k, v);
  __syncthreads();

  block_gemm<RowMajor, ColMajor>(kTile, kTile, d, q, d, k, d, scores, kTile);  // S = q k^T
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int i = warp; i < kTile; i += kWarps) {
    float s[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int j = lane + 32 * half;
      s[half] = (i < n && j < n) ? biased_score(scores[i * kTile + j], bias, h, i, j, n, region) : -INFINITY;
    }
    const float m = warp_max(fmaxf(s[0], s[1]));
    float e[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) e[half] = i < n ? softmax_exp<T>(s[half] - m) : 0.0f;
    const float l = warp_sum(e[0] + e[1]);
    const float inv = i < n ? 1.0f / l : 0.0f;
#pragma unroll
    for (int half = 0; half < 2; ++half) probs[i * kTile + lane + 32 * half] = from_float<T>(e[half] * inv);
    if (lane == 0 && i < n) args.lse[(bw * heads + h) * n + i] = m + logf(l);
  }
  __syncthreads();

  block_gemm<RowMajor, RowMajor>(kTile, d, kTile, probs, kTile, v, d, product, d);  // O = P v
  __syncthreads();

  T* out = static_cast<T*>(args.out);
  for (int idx = threadIdx.x; idx < n * d; idx += kThreads) {
    const int t = idx / d, e = idx % d;
    if (pixel[t] >= 0) out[pixel[t] * c + static_cast<int64_t>(h) * d + e] = from_float<T>(product[idx]);
  }
}

template <typename T>
cudaError_t launch(const AttentionForwardArgs& args, cudaStream_t stream) {
  const int64_t blocks = args.batch * args.grid.windows_per_image * args.heads;
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;  // gridDim.x limit
  const int64_t smem = attention_smem(sizeof(T), args.head_dim, false).bytes;
  cudaError_t status = cudaFuncSetAttribute(attention_forward_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem));
  if (status != cudaSuccess) return status;
  attention_forward_kernel<T><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_attention_forward(const AttentionForwardArgs& args, cudaStream_t stream) {
  if (args.batch * args.grid.windows_per_image * args.heads == 0) return cudaSuccess;
  return dispatch_dtype(args.dtype, [&](auto element) { return launch<decltype(element)>(args, stream); });
}

}  // namespace cuda
}  // namespace swin_kernels
