// Device building blocks of the attention kernels: element conversions, warp reductions and a block-wide GEMM on
// shared memory (tensor cores through nvcuda::wmma for fp16/bf16, FMA for fp32, which must stay exact fp32).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#include <stdint.h>

#include "../index_maps.h"
#include "attention_smem.h"
#include "kernel_limits.h"
#include "launch_api.h"

namespace swin_kernels {
namespace cuda {

constexpr int kWarps = kThreads / 32;  // kThreads: kernel_limits.h

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// exp in the softmax: exact-rounding expf for fp32 results, the fast approximation where results are 16-bit.
template <typename T>
__device__ __forceinline__ float softmax_exp(float x) {
  if constexpr (sizeof(T) == 4)
    return expf(x);
  else
    return __expf(x);
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  return x;
}

// Operand layouts: A(i, k) is a[i * lda + k] (RowMajor) or a[k * lda + i] (ColMajor);
//                  B(k, j) is b[k * ldb + j] (RowMajor) or b[j * ldb + k] (ColMajor).
struct RowMajor {
  using wmma_layout = nvcuda::wmma::row_major;
  __device__ static int64_t at(int64_t outer, int64_t inner, int64_t ld) { return outer * ld + inner; }
};
struct ColMajor {
  using wmma_layout = nvcuda::wmma::col_major;
  __device__ static int64_t at(int64_t outer, int64_t inner, int64_t ld) { return inner * ld + outer; }
};

// C (m x n, fp32, row-major, ldc) = A (m x k) B (k x n), all in shared memory, m, n, k multiples of 16.
// Half types: one 16 x 16 output tile per warp at a time on the tensor cores (fp32 accumulation; bf16 needs sm_80).
template <typename LayoutA, typename LayoutB, typename T>
__device__ void block_gemm(int m, int n, int k, const T* a, int lda, const T* b, int ldb, float* c, int ldc) {
  using namespace nvcuda;
  const int warp = threadIdx.x / 32, tiles_n = n / 16, tiles = (m / 16) * tiles_n;
  for (int tile = warp; tile < tiles; tile += kWarps) {
    const int ti = tile / tiles_n, tj = tile % tiles_n;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int kk = 0; kk < k; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, typename LayoutA::wmma_layout> fa;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, typename LayoutB::wmma_layout> fb;
      wmma::load_matrix_sync(fa, a + LayoutA::at(ti * 16, kk, lda), lda);
      wmma::load_matrix_sync(fb, b + LayoutB::at(kk, tj * 16, ldb), ldb);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(c + ti * 16 * ldc + tj * 16, acc, ldc, wmma::mem_row_major);
  }
}

// fp32: each thread accumulates 4 x 4 output blocks with FMAs (tensor cores would round the inputs to tf32).
template <typename LayoutA, typename LayoutB>
__device__ void block_gemm(int m, int n, int k, const float* a, int lda, const float* b, int ldb, float* c, int ldc) {
  const int blocks_n = n / 4, blocks = (m / 4) * blocks_n;
  for (int blk = threadIdx.x; blk < blocks; blk += kThreads) {
    const int i0 = (blk / blocks_n) * 4, j0 = (blk % blocks_n) * 4;
    float acc[4][4] = {};
    for (int kk = 0; kk < k; ++kk) {
      float av[4], bv[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) av[r] = a[LayoutA::at(i0 + r, kk, lda)];
#pragma unroll
      for (int s = 0; s < 4; ++s) bv[s] = b[LayoutB::at(kk, j0 + s, ldb)];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int s = 0; s < 4; ++s) acc[r][s] = fmaf(av[r], bv[s], acc[r][s]);
    }
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int s = 0; s < 4; ++s) c[(i0 + r) * ldc + j0 + s] = acc[r][s];
  }
}

// Pixel (b*H*W + y*W + x, -1 for padding, -2 past the window's N tokens) and region id of the 64 token slots of
// window bw of the batch; returns through shared memory (caller synchronises).
__device__ __forceinline__ void load_window(const maps::WindowGrid& g, int64_t bw, int64_t* pixel, int* region) {
  const int64_t w = bw % g.windows_per_image, image = (bw / g.windows_per_image) * g.pixels;
  for (int t = threadIdx.x; t < kTile; t += kThreads) {
    if (t < g.tokens) {
      const int64_t p = maps::token_pixel(g, w, t);
      pixel[t] = p < 0 ? -1 : image + p;
      region[t] = maps::token_region(g, w, t);
    } else {
      pixel[t] = -2;
      region[t] = -1;
    }
  }
}

// q (times scale), k and v tiles (kTile x d, row-major) of head h of a window, gathered through pixel (see
// load_window): real tokens read their row of the (B, H, W, 3C) map, padding tokens pad_qkv (null: zeros),
// slots past N zeros.
template <typename T>
__device__ __forceinline__ void load_qkv_tiles(const T* qkv, const T* pad, const int64_t* pixel, int h, int d,
                                               int64_t c, float scale, T* q, T* k, T* v) {
  for (int idx = threadIdx.x; idx < kTile * d; idx += kThreads) {
    const int t = idx / d, e = idx % d;
    const int64_t p = pixel[t];
    const T* row = p >= 0 ? qkv + p * 3 * c : (p == -1 ? pad : nullptr);  // null: zeros
    const int64_t at = static_cast<int64_t>(h) * d + e;
    q[idx] = from_float<T>(row ? to_float(row[at]) * scale : 0.0f);
    k[idx] = row ? row[c + at] : from_float<T>(0.0f);
    v[idx] = row ? row[2 * c + at] : from_float<T>(0.0f);
  }
}

// score + bias + shift mask of token pair (i, j) < N of head h (scores already carry the scale through q).
template <typename T>
__device__ __forceinline__ float biased_score(float score, const T* bias, int h, int i, int j, int n,
                                              const int* region) {
  if (bias != nullptr) score += to_float(bias[(static_cast<int64_t>(h) * n + i) * n + j]);
  if (region[i] != region[j]) score += maps::kShiftMaskValue;
  return score;
}

// launch(T{}) with T the element type of dtype: one host-side switch for every kernel templated on it.
template <typename Launch>
cudaError_t dispatch_dtype(DType dtype, const Launch& launch) {
  switch (dtype) {
    case DType::kFloat32:
      return launch(float{});
    case DType::kFloat16:
      return launch(__half{});
    case DType::kBFloat16:
      return launch(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace swin_kernels
