// Device building blocks of the attention kernels: element conversions, warp reductions, a block-wide GEMM on
// shared memory (tensor cores through nvcuda::wmma for fp16/bf16, FMA for fp32, which must stay exact fp32), and the
// gathers and scatters of a window's token rows through the index maps. The tile sizes (kTile tokens, head_dim D)
// are compile-time constants: each supported head_dim is an instantiation (dispatch_head_dim).
//
// Loops that stay loops in the compiled code carry their trip count for the static cost model
// (tools/cost_model/cuda_kernels.py): `// trips: ...`.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>
#include <stdint.h>

#include <type_traits>

#include "../index_maps.h"
#include "attention_smem.h"
#include "kernel_limits.h"
#include "launch_api.h"

namespace swin_kernels {
namespace cuda {

constexpr int kWarps = kThreads / 32;  // kThreads: kernel_limits.h
static_assert(kTile <= kThreads, "load_window gives each token slot a thread of its own");

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
  __device__ static int at(int outer, int inner, int ld) { return outer * ld + inner; }
};
struct ColMajor {
  using wmma_layout = nvcuda::wmma::col_major;
  __device__ static int at(int outer, int inner, int ld) { return inner * ld + outer; }
};

// C (M x N, fp32, row-major, ldc) = A (M x K) B (K x N), all in shared memory, M, N, K multiples of 16.
// Half types: one 16 x 16 output tile per warp at a time on the tensor cores (fp32 accumulation; bf16 needs sm_80).
template <int M, int N, int K, typename LayoutA, typename LayoutB, typename T>
__device__ __forceinline__ void block_gemm(const T* a, int lda, const T* b, int ldb, float* c, int ldc) {
  using namespace nvcuda;
  constexpr int kTilesN = N / 16, kTiles = (M / 16) * kTilesN;
  static_assert(M % 16 == 0 && N % 16 == 0 && K % 16 == 0 && kTiles % kWarps == 0, "whole 16 x 16 tiles per warp");
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int round = 0; round < kTiles / kWarps; ++round) {
    const int tile = warp + round * kWarps, ti = tile / kTilesN, tj = tile % kTilesN;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.0f);
#pragma unroll
    for (int kk = 0; kk < K; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, typename LayoutA::wmma_layout> fa;
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, typename LayoutB::wmma_layout> fb;
      wmma::load_matrix_sync(fa, a + LayoutA::at(ti * 16, kk, lda), lda);
      wmma::load_matrix_sync(fb, b + LayoutB::at(kk, tj * 16, ldb), ldb);
      wmma::mma_sync(acc, fa, fb, acc);
    }
    wmma::store_matrix_sync(c + ti * 16 * ldc + tj * 16, acc, ldc, wmma::mem_row_major);
  }
}

// fp32: each thread accumulates 4 x 4 output blocks with FMAs in k order (tensor cores would round the inputs to
// tf32).
template <int M, int N, int K, typename LayoutA, typename LayoutB>
__device__ __forceinline__ void block_gemm(const float* a, int lda, const float* b, int ldb, float* c, int ldc) {
  constexpr int kBlocksN = N / 4, kBlocks = (M / 4) * kBlocksN;
  static_assert(M % 4 == 0 && N % 4 == 0 && K % 4 == 0, "whole 4 x 4 blocks");
#pragma unroll
  for (int round = 0; round < (kBlocks + kThreads - 1) / kThreads; ++round) {
    const int blk = threadIdx.x + round * kThreads;
    if (kBlocks % kThreads != 0 && blk >= kBlocks) break;
    const int i0 = (blk / kBlocksN) * 4, j0 = (blk % kBlocksN) * 4;
    float acc[4][4] = {};
#pragma unroll 4
    for (int kk = 0; kk < K; ++kk) {  // trips: K, unrolled 4
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

// Pixel (b*D*H*W + index in the volume, -1 for padding, -2 past the window's N tokens) and region id of the kTile
// token slots of window bw of the batch, written to shared memory by the first kTile threads. Synchronises the
// block (every thread must call it) and returns to every thread whether the window holds padding tokens.
__device__ __forceinline__ bool load_window(const maps::WindowGrid& g, int64_t bw, int64_t* pixel, int* region) {
  int padding = 0;
  const int t = threadIdx.x;
  if (t < kTile) {
    if (t < g.tokens) {
      const int64_t b = bw / g.windows_per_image, image = b * g.pixels;
      const maps::WindowOrigin origin = maps::window_origin(g, bw - b * g.windows_per_image);
      const int64_t p = maps::token_pixel(g, origin, t);
      pixel[t] = p < 0 ? -1 : image + p;
      region[t] = maps::token_region(g, origin, t);
      padding = p < 0;
    } else {
      pixel[t] = -2;
      region[t] = -1;
    }
  }
  return __syncthreads_or(padding) != 0;
}

// Head slices move in 16-byte units of kUnit<T> elements where every slice start is 16-byte aligned: the base
// pointers are (vector_io_aligned), head offsets and row lengths always are (head_dim a multiple of 16 elements of
// at least 2 bytes). Otherwise one element at a time; both paths move the same values.
template <typename T>
constexpr int kUnit = 16 / static_cast<int>(sizeof(T));
static_assert(kHeadDimMultiple * 2 % 16 == 0, "16-bit head slices of any supported head_dim are whole 16-byte units");

__device__ __forceinline__ uint4 load_unit(const void* p) { return *static_cast<const uint4*>(p); }
__device__ __forceinline__ void store_unit(void* p, const uint4& u) { *static_cast<uint4*>(p) = u; }

inline bool vector_io_aligned(const void* const* pointers, int count) {
  for (int i = 0; i < count; ++i)
    if (reinterpret_cast<uintptr_t>(pointers[i]) % 16 != 0) return false;  // null is aligned
  return true;
}

// Rows first..kTile-1 of a kTile x kTile tile set to zero (16-byte stores: a row is a whole number of units).
template <typename T>
__device__ __forceinline__ void zero_rows(T* tile, int first) {
  static_assert(kTile % kUnit<T> == 0, "whole units per row");
  const int units = (kTile - first) * (kTile / kUnit<T>);
  T* rows = tile + first * kTile;
#pragma unroll 1
  // trips: cdiv((kTile - first) * kTile * sizeof(T) / 16, kThreads)
  for (int unit = threadIdx.x; unit < units; unit += kThreads)
    store_unit(rows + unit * kUnit<T>, make_uint4(0, 0, 0, 0));
}

// The source row of a token slot: its row of the map, pad (null: zeros) for padding, null (zeros) past N.
template <typename T>
__device__ __forceinline__ const T* token_row(const T* map, const T* pad, int64_t pixel, int64_t row_elements) {
  return pixel >= 0 ? map + pixel * row_elements : (pixel == -1 ? pad : nullptr);
}

// q (times scale), k and v tiles (kTile x D, row-major) of head h of a window, gathered through pixel (see
// load_window): real tokens read their row of the (B, [D,] H, W, 3C) map, padding tokens pad_qkv (null: zeros),
// slots past N zeros.
template <int D, typename T>
__device__ __forceinline__ void load_qkv_tiles(const T* qkv, const T* pad, const int64_t* pixel, int h, int64_t c,
                                               float scale, T* q, T* k, T* v, bool vector) {
  const int64_t head = static_cast<int64_t>(h) * D;
  if (vector) {
    constexpr int kUnitsPerRow = D / kUnit<T>, kUnits = kTile * kUnitsPerRow;
    static_assert(D % kUnit<T> == 0 && kUnits % kThreads == 0, "whole units, the same number per thread");
#pragma unroll
    for (int round = 0; round < kUnits / kThreads; ++round) {
      const int unit = threadIdx.x + round * kThreads, t = unit / kUnitsPerRow, e = (unit % kUnitsPerRow) * kUnit<T>;
      const T* row = token_row(qkv, pad, pixel[t], 3 * c);
      uint4 uq = make_uint4(0, 0, 0, 0), uk = uq, uv = uq;
      if (row != nullptr) {
        uq = load_unit(row + head + e);
        uk = load_unit(row + c + head + e);
        uv = load_unit(row + 2 * c + head + e);
        T* scaled = reinterpret_cast<T*>(&uq);
#pragma unroll
        for (int j = 0; j < kUnit<T>; ++j) scaled[j] = from_float<T>(to_float(scaled[j]) * scale);
      }
      store_unit(q + t * D + e, uq);
      store_unit(k + t * D + e, uk);
      store_unit(v + t * D + e, uv);
    }
    return;
  }
#pragma unroll 1
  for (int idx = threadIdx.x; idx < kTile * D; idx += kThreads) {  // trips: 0 if vector else kTile * D / kThreads
    const int t = idx / D, e = idx % D;
    const T* row = token_row(qkv, pad, pixel[t], 3 * c);
    q[idx] = from_float<T>(row ? to_float(row[head + e]) * scale : 0.0f);
    k[idx] = row ? row[c + head + e] : from_float<T>(0.0f);
    v[idx] = row ? row[2 * c + head + e] : from_float<T>(0.0f);
  }
}

// The kTile x D tile (row-major) of the slice at element `offset` of the rows (row_elements long) of a map at the
// window's real tokens; zeros for padding and the slots past N.
template <int D, typename T>
__device__ __forceinline__ void load_rows(const T* map, const int64_t* pixel, int64_t row_elements, int64_t offset,
                                          T* tile, bool vector) {
  if (vector) {
    constexpr int kUnitsPerRow = D / kUnit<T>, kUnits = kTile * kUnitsPerRow;
#pragma unroll
    for (int round = 0; round < kUnits / kThreads; ++round) {
      const int unit = threadIdx.x + round * kThreads, t = unit / kUnitsPerRow, e = (unit % kUnitsPerRow) * kUnit<T>;
      const int64_t p = pixel[t];
      store_unit(tile + t * D + e, p >= 0 ? load_unit(map + p * row_elements + offset + e) : make_uint4(0, 0, 0, 0));
    }
    return;
  }
#pragma unroll 1
  for (int idx = threadIdx.x; idx < kTile * D; idx += kThreads) {  // trips: 0 if vector else kTile * D / kThreads
    const int64_t p = pixel[idx / D];
    tile[idx] = p >= 0 ? map[p * row_elements + offset + idx % D] : from_float<T>(0.0f);
  }
}

// Rows of product (kTile x D fp32, row-major, shared memory) times factor, rounded to T, into the slice at element
// `offset` of the map rows (row_elements long) of the window's real tokens; padding and slots past N are skipped.
template <int D, typename T>
__device__ __forceinline__ void store_rows(const float* product, float factor, const int64_t* pixel, T* map,
                                           int64_t row_elements, int64_t offset, bool vector) {
  if (vector) {
    constexpr int kUnitsPerRow = D / kUnit<T>, kUnits = kTile * kUnitsPerRow;
#pragma unroll
    for (int round = 0; round < kUnits / kThreads; ++round) {
      const int unit = threadIdx.x + round * kThreads, t = unit / kUnitsPerRow, e = (unit % kUnitsPerRow) * kUnit<T>;
      const int64_t p = pixel[t];
      if (p < 0) continue;
      uint4 u;
      T* out = reinterpret_cast<T*>(&u);
      const float4* in = reinterpret_cast<const float4*>(product + t * D + e);
#pragma unroll
      for (int j = 0; j < kUnit<T> / 4; ++j) {
        const float4 f = in[j];
        out[4 * j] = from_float<T>(f.x * factor);
        out[4 * j + 1] = from_float<T>(f.y * factor);
        out[4 * j + 2] = from_float<T>(f.z * factor);
        out[4 * j + 3] = from_float<T>(f.w * factor);
      }
      store_unit(map + p * row_elements + offset + e, u);
    }
    return;
  }
#pragma unroll 1
  for (int idx = threadIdx.x; idx < kTile * D; idx += kThreads) {  // trips: 0 if vector else kTile * D / kThreads
    const int64_t p = pixel[idx / D];
    if (p >= 0) map[p * row_elements + offset + idx % D] = from_float<T>(product[idx] * factor);
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

// launch(std::integral_constant<int, D>{}) for a supported head_dim D (kernel_limits.h).
template <typename Launch>
cudaError_t dispatch_head_dim(int head_dim, const Launch& launch) {
  static_assert(kHeadDimMultiple == 16 && kMaxHeadDim == 64, "one case per supported head_dim");
  switch (head_dim) {
    case 16:
      return launch(std::integral_constant<int, 16>{});
    case 32:
      return launch(std::integral_constant<int, 32>{});
    case 48:
      return launch(std::integral_constant<int, 48>{});
    case 64:
      return launch(std::integral_constant<int, 64>{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace cuda
}  // namespace swin_kernels
