// Forward of (shifted) window attention on CUDA: one block per (window, head), 128 threads; one instantiation per
// element type and head_dim D.
//
// The block gathers its window's q (scaled), k, v straight from the (B, [D,] H, W, 3C) map through
// maps::token_pixel (padding -> pad_qkv, tokens padded to 64 -> zeros; 16-byte loads of each token's head slice
// where the pointers allow) into shared memory, computes S = q k^T (tensor cores for fp16/bf16), adds bias and the
// shift mask (region ids from maps::token_region), takes the softmax in fp32 with one warp per row (saving
// lse = max + log(sum)), computes O = P v and writes it to (B, [D,] H, W, C) at the tokens' pixels. Offsets are
// 64-bit.
#include "attention_smem.h"
#include "block_ops.cuh"
#include "launch_api.h"

namespace swin_kernels {
namespace cuda {
namespace {

// 4 blocks per SM, more than the shared memory allows for most configurations: said, it keeps ptxas from squeezing
// an instantiation into 32 registers with spills.
template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 4)
    attention_forward_kernel(const AttentionForwardArgs args, const bool vector) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int heads = args.heads, n = args.grid.tokens;
  const AttentionSmem layout = attention_smem(sizeof(T), D, false);
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
  const int64_t c = static_cast<int64_t>(heads) * D;
  const T* qkv = static_cast<const T*>(args.qkv);
  const T* pad = static_cast<const T*>(args.pad_qkv);
  const T* bias = static_cast<const T*>(args.bias);
  load_window(args.grid, bw, pixel, region);  // synchronises
  load_qkv_tiles<D>(qkv, pad, pixel, h, c, args.scale, q, k, v, vector);
  __syncthreads();

  block_gemm<kTile, kTile, D, RowMajor, ColMajor>(q, D, k, D, scores, kTile);  // S = q k^T
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll 1
  for (int i = warp; i < n; i += kWarps) {  // trips: cdiv(n, kWarps)
    float s[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int j = lane + 32 * half;
      s[half] = j < n ? biased_score(scores[i * kTile + j], bias, h, i, j, n, region) : -INFINITY;
    }
    const float m = warp_max(fmaxf(s[0], s[1]));
    float e[2];
#pragma unroll
    for (int half = 0; half < 2; ++half) e[half] = softmax_exp<T>(s[half] - m);
    const float l = warp_sum(e[0] + e[1]);
    const float inv = 1.0f / l;
#pragma unroll
    for (int half = 0; half < 2; ++half) probs[i * kTile + lane + 32 * half] = from_float<T>(e[half] * inv);
    if (lane == 0) args.lse[(bw * heads + h) * n + i] = m + logf(l);
  }
  zero_rows<T>(probs, n);  // the slots past N: P's rows there are zeros
  __syncthreads();

  block_gemm<kTile, D, kTile, RowMajor, RowMajor>(probs, kTile, v, D, product, D);  // O = P v
  __syncthreads();

  store_rows<D>(product, 1.0f, pixel, static_cast<T*>(args.out), c, static_cast<int64_t>(h) * D, vector);
}

template <typename T, int D>
cudaError_t launch(const AttentionForwardArgs& args, cudaStream_t stream) {
  const int64_t blocks = args.batch * args.grid.windows_per_image * args.heads;
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;  // gridDim.x limit
  const int64_t smem = attention_smem_bytes(sizeof(T), D, false);
  cudaError_t status = cudaFuncSetAttribute(attention_forward_kernel<T, D>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (status != cudaSuccess) return status;
  const void* pointers[] = {args.qkv, args.pad_qkv, args.out};
  const bool vector = vector_io_aligned(pointers, 3);
  attention_forward_kernel<T, D><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(args, vector);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_attention_forward(const AttentionForwardArgs& args, cudaStream_t stream) {
  if (args.batch * args.grid.windows_per_image * args.heads == 0) return cudaSuccess;
  return dispatch_dtype(args.dtype, [&](auto element) {
    return dispatch_head_dim(args.head_dim, [&](auto head_dim) {
      return launch<decltype(element), decltype(head_dim)::value>(args, stream);
    });
  });
}

}  // namespace cuda
}  // namespace swin_kernels
