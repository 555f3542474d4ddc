// Device building blocks of the flash-style attention kernels (attention_flash_forward.cu,
// attention_flash_backward.cu): ldmatrix and mma.sync m16n8k16 wrappers, packing to fragment registers, base-2
// exponentials, the gathers of padded q/k/v tiles and the staging of a head's bias tile. The index arithmetic is
// mma_layout.h's and flash_window.h's (tested on the host: csrc/tests/test_mma_layout.cpp).
#pragma once

#include "block_ops.cuh"
#include "flash_window.h"
#include "mma_layout.h"

namespace swin_kernels {
namespace cuda {

static_assert(kTile % 16 == 0 && kTile / mma::kRowsPerWarp == kWarps, "each warp owns 16 of the kTile rows");

__device__ __forceinline__ uint32_t smem_address(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(p)));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_address(p)));
}

// c += a b on the tensor cores: one m16n8k16 step, fp32 accumulators.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                         uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats rounded to T, the first in the low half (the lower-indexed element of a fragment register).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// q, k, v of head h (kTile x D each, padded rows of mma::smem_pitch(D)) gathered through pixel in 16-byte units
// (the launcher runs the flash kernel only where every pointer is 16-byte aligned).
template <int D, typename T>
__device__ __forceinline__ void load_qkv_padded(const T* qkv, const T* pad, const int64_t* pixel, int h, int64_t c,
                                                T* q, T* k, T* v) {
  constexpr int kUnitsPerRow = D / kUnit<T>, kUnits = kTile * kUnitsPerRow;
  static_assert(D % kUnit<T> == 0 && kUnits % kThreads == 0, "whole units, the same number per thread");
#pragma unroll
  for (int round = 0; round < kUnits / kThreads; ++round) {
    const int unit = threadIdx.x + round * kThreads, t = unit / kUnitsPerRow, e = (unit % kUnitsPerRow) * kUnit<T>;
    const T* row = token_row(qkv, pad, pixel[t], 3 * c);
    uint4 uq = make_uint4(0, 0, 0, 0), uk = uq, uv = uq;
    if (row != nullptr) {
      uq = load_unit(row + mma::map_offset(0, 0, 0, c, h, D, e));
      uk = load_unit(row + mma::map_offset(0, 0, 1, c, h, D, e));
      uv = load_unit(row + mma::map_offset(0, 0, 2, c, h, D, e));
    }
    const int at = mma::smem_offset(t, e, D);
    store_unit(q + at, uq);
    store_unit(k + at, uk);
    store_unit(v + at, uv);
  }
}

// ex2.approx: 2^x (the softmax runs in base 2, scale and bias carry log2(e)); 2^-inf = +0.
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

// The head's bias (times log2 e) in a kTile x bias_pitch fp32 tile: -inf in the columns past N (no key there),
// zeros in the rows past N (computed, never stored). Thread x stages column x % kTile of every
// (kThreads / kTile)-th row. The caller synchronises before reading it.
template <typename T>
__device__ __forceinline__ void stage_bias_tile(const T* bias, int h, int n, float* bias_tile) {
  constexpr int kRowsPerPass = kThreads / kTile;
  static_assert(kThreads % kTile == 0, "whole rows per pass");
  const int j = threadIdx.x % kTile, i0 = threadIdx.x / kTile;
  const float past = j < n ? 0.0f : -INFINITY;
  const T* column = bias != nullptr && j < n ? bias + (static_cast<int64_t>(h) * n + i0) * n + j : nullptr;
#pragma unroll
  for (int pass = 0; pass < kTile / kRowsPerPass; ++pass) {
    const int i = i0 + pass * kRowsPerPass;
    float value = past;
    if (column != nullptr && i < n) value = to_float(column[static_cast<int64_t>(pass) * kRowsPerPass * n]) * kLog2e;
    bias_tile[mma::bias_offset(i, j, kTile)] = value;
  }
}

// acc = A B for one warp: A (16 x kSteps·16) held as kSteps m16n8k16 A fragments in registers, B (kSteps·16 x
// kNTiles·8) row-major in padded shared memory (pitch mma::smem_pitch(D)), loaded by ldmatrix.trans two n-tiles at
// a time. O = P v in the forward and dQ = dS k in the backward.
template <int kNTiles, int kSteps, int D, typename T>
__device__ __forceinline__ void mma_regs_times_smem(float (&acc)[kNTiles][4], const uint32_t (&a)[kSteps][4],
                                                    const T* b, int lane) {
#pragma unroll
  for (int j = 0; j < kNTiles; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) acc[j][e] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < kSteps; ++kk)
#pragma unroll
    for (int pair = 0; pair < kNTiles / 2; ++pair) {
      uint32_t bt[4];
      ldmatrix_x4_trans(bt, b + mma::smem_offset(kk * mma::kK + mma::ldm_v_row(lane),
                                                 2 * pair * mma::kN + mma::ldm_v_col(lane), D));
      mma_16816<T>(acc[2 * pair], a[kk], bt[0], bt[1]);
      mma_16816<T>(acc[2 * pair + 1], a[kk], bt[2], bt[3]);
    }
}

// The flash kernels' grid: x = runs of windows_per_block windows of one image, times the heads; the images on y,
// then z. cudaErrorInvalidConfiguration where a dimension would pass its limit.
inline cudaError_t flash_grid(int64_t batch, int64_t windows_per_image, int64_t windows_per_block, int64_t heads,
                              dim3* grid) {
  const int64_t blocks_x = (windows_per_image + windows_per_block - 1) / windows_per_block * heads;
  if (blocks_x > 0x7fffffff) return cudaErrorInvalidConfiguration;  // gridDim.x limit
  const int64_t blocks_y = batch < 65535 ? batch : 65535;
  const int64_t blocks_z = (batch + blocks_y - 1) / blocks_y;
  if (blocks_z > 65535) return cudaErrorInvalidConfiguration;
  *grid = dim3(static_cast<unsigned>(blocks_x), static_cast<unsigned>(blocks_y), static_cast<unsigned>(blocks_z));
  return cudaSuccess;
}

}  // namespace cuda
}  // namespace swin_kernels
