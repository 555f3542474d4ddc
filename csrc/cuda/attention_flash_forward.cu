// Forward of (shifted) window attention on CUDA in the flash-attention style: one block per (window, head), 4 warps,
// each warp owning 16 query rows of the window's kTile (64) token slots; fp16 and bf16, one instantiation per
// head_dim D. Selected by SWIN_KERNELS_CUDA_KERNELS=flash (launch_api.h); until a GPU has run it the default is the
// verified kernel of attention_forward.cu, which also serves fp32.
//
// The block gathers q, k and v of its head straight from the (B, [D,] H, W, 3C) map through maps::token_pixel
// (padding -> pad_qkv, slots past N -> zeros; 16-byte units where the pointers allow) into padded shared memory
// (rows of D + 8 elements: conflict-free ldmatrix). Each warp then keeps everything in registers: its q fragments
// (ldmatrix), S = q k^T over all 64 key slots (mma.sync m16n8k16, fp32 accumulators, k fragments by ldmatrix),
// scale, bias (read once per block: each element by the one lane whose fragment holds it) and shift mask (region
// ids, only in windows that hold several regions), the row max and sum over the 4 lanes of a row (two shuffles
// each), P = exp(S - max) rounded to the element type straight into A fragments, O = P v (v fragments by
// ldmatrix.trans), O / sum, lse = max + log(sum). O goes through the warp's own 16 rows of the q tile to 16-byte
// stores at the tokens' pixels. A window of at most kTile tokens is one key tile: the softmax needs no online
// rescaling. All fragment, ldmatrix, padding and staging arithmetic is mma_layout.h's, tested on the host
// (csrc/tests/test_mma_layout.cpp).
#include "block_ops.cuh"
#include "launch_api.h"
#include "mma_layout.h"

namespace swin_kernels {
namespace cuda {
namespace {

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

// Pixel (as load_window) and region id of the kTile token slots, by the first kTile threads; synchronises the block
// and returns bit 0: the window holds padding, bit 1: its tokens lie in more than one shift region.
__device__ __forceinline__ int load_window_flags(const maps::WindowGrid& g, int64_t bw, int64_t* pixel, int* region) {
  int flags = 0;
  const int t = threadIdx.x;
  if (t < kTile) {
    if (t < g.tokens) {
      const int64_t b = bw / g.windows_per_image, image = b * g.pixels;
      const maps::WindowOrigin origin = maps::window_origin(g, bw - b * g.windows_per_image);
      const int64_t p = maps::token_pixel(g, origin, t);
      const int r = maps::token_region(g, origin, t);
      pixel[t] = p < 0 ? -1 : image + p;
      region[t] = r;
      flags = (p < 0 ? 1 : 0) | (r != maps::token_region(g, origin, 0) ? 2 : 0);
    } else {
      pixel[t] = -2;
      region[t] = -1;
    }
  }
  return __syncthreads_or(flags & 1) | (__syncthreads_or(flags & 2) ? 2 : 0);
}

// q, k, v of head h (kTile x D each, padded rows of mma::smem_pitch(D)) gathered through pixel.
template <int D, typename T>
__device__ __forceinline__ void load_qkv_padded(const T* qkv, const T* pad, const int64_t* pixel, int h, int64_t c,
                                                T* q, T* k, T* v, bool vector) {
  if (vector) {
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
    return;
  }
#pragma unroll 1
  for (int idx = threadIdx.x; idx < kTile * D; idx += kThreads) {  // trips: 0 if vector else kTile * D / kThreads
    const int t = idx / D, e = idx % D, at = mma::smem_offset(t, e, D);
    const T* row = token_row(qkv, pad, pixel[t], 3 * c);
    q[at] = row ? row[mma::map_offset(0, 0, 0, c, h, D, e)] : from_float<T>(0.0f);
    k[at] = row ? row[mma::map_offset(0, 0, 1, c, h, D, e)] : from_float<T>(0.0f);
    v[at] = row ? row[mma::map_offset(0, 0, 2, c, h, D, e)] : from_float<T>(0.0f);
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 4)
    attention_flash_forward_kernel(const AttentionForwardArgs args, const bool vector) {
  extern __shared__ __align__(128) unsigned char smem[];
  constexpr int kTileElements = mma::smem_tile_elements(kTile, D);
  constexpr int kNTiles = kTile / mma::kN;          // n-tiles of S (8 columns each)
  constexpr int kKSteps = D / mma::kK;              // k-steps of S = q k^T
  constexpr int kPSteps = kTile / mma::kK;          // k-steps of O = P v
  constexpr int kOTiles = D / mma::kN;              // n-tiles of O
  static_assert(D % 16 == 0, "head_dim a multiple of 16");
  T* q = reinterpret_cast<T*>(smem);
  T* k = q + kTileElements;
  T* v = k + kTileElements;
  int64_t* pixel = reinterpret_cast<int64_t*>(v + kTileElements);
  int* region = reinterpret_cast<int*>(pixel + kTile);

  const int heads = args.heads, n = args.grid.tokens;
  const int64_t bw = blockIdx.x / heads;
  const int h = blockIdx.x % heads;
  const int64_t c = static_cast<int64_t>(heads) * D;
  const int flags = load_window_flags(args.grid, bw, pixel, region);  // synchronises
  load_qkv_padded<D>(static_cast<const T*>(args.qkv), static_cast<const T*>(args.pad_qkv), pixel, h, c, q, k, v,
                     vector);
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r0 = warp * mma::kRowsPerWarp;
  if (r0 >= n) return;  // no real query row in this warp (no block-wide barrier follows)

  // S = q k^T
  uint32_t qa[kKSteps][4];
#pragma unroll
  for (int kk = 0; kk < kKSteps; ++kk)
    ldmatrix_x4(qa[kk], q + mma::smem_offset(r0 + mma::ldm_a_row(lane), kk * mma::kK + mma::ldm_a_col(lane), D));
  float s[kNTiles][4];
#pragma unroll
  for (int j = 0; j < kNTiles; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) s[j][e] = 0.0f;
#pragma unroll
  for (int pair = 0; pair < kNTiles / 2; ++pair)
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      uint32_t b[4];
      ldmatrix_x4(b, k + mma::smem_offset(2 * pair * mma::kN + mma::ldm_kt_row(lane),
                                          kk * mma::kK + mma::ldm_kt_col(lane), D));
      mma_16816<T>(s[2 * pair], qa[kk], b[0], b[1]);
      mma_16816<T>(s[2 * pair + 1], qa[kk], b[2], b[3]);
    }

  // scale, bias, mask; the row max and sum over the 4 lanes that hold a row
  const T* bias = static_cast<const T*>(args.bias);
  const bool masked = (flags & 2) != 0;
  int row_of[2], region_of[2];
  const T* bias_row[2];
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    row_of[half] = r0 + mma::c_row(lane, 2 * half);
    const int clamped = row_of[half] < n ? row_of[half] : n - 1;  // rows past N compute, and are never stored
    region_of[half] = region[row_of[half]];
    bias_row[half] = bias != nullptr ? bias + (static_cast<int64_t>(h) * n + clamped) * n : nullptr;
  }
  float row_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
  for (int j = 0; j < kNTiles; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int half = e >> 1, col = j * mma::kN + mma::c_col(lane, e);
      float x = s[j][e] * args.scale;
      if (bias != nullptr && col < n) x += to_float(bias_row[half][col]);
      if (masked && region[col] != region_of[half]) x += maps::kShiftMaskValue;
      x = col < n ? x : -INFINITY;
      s[j][e] = x;
      row_max[half] = fmaxf(row_max[half], x);
    }
  float row_sum[2] = {0.0f, 0.0f};
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    row_max[half] = fmaxf(row_max[half], __shfl_xor_sync(0xffffffffu, row_max[half], 1));
    row_max[half] = fmaxf(row_max[half], __shfl_xor_sync(0xffffffffu, row_max[half], 2));
  }
  // P = exp(S - max), rounded to T, straight into the A fragments of O = P v
  uint32_t pa[kPSteps][4];
#pragma unroll
  for (int kk = 0; kk < kPSteps; ++kk)
#pragma unroll
    for (int reg = 0; reg < 4; ++reg) {
      const int j = mma::p_tile_of_a_register(kk, reg), e0 = mma::p_first_c_of_a_register(reg), half = e0 >> 1;
      const float p0 = __expf(s[j][e0] - row_max[half]), p1 = __expf(s[j][e0 + 1] - row_max[half]);
      row_sum[half] += p0 + p1;
      pa[kk][reg] = pack2<T>(p0, p1);
    }
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    row_sum[half] += __shfl_xor_sync(0xffffffffu, row_sum[half], 1);
    row_sum[half] += __shfl_xor_sync(0xffffffffu, row_sum[half], 2);
  }
  if (mma::tid_of(lane) == 0) {
#pragma unroll
    for (int half = 0; half < 2; ++half)
      if (row_of[half] < n)
        args.lse[mma::lse_offset(bw, heads, h, n, row_of[half])] = row_max[half] + logf(row_sum[half]);
  }

  // O = P v
  float o[kOTiles][4];
#pragma unroll
  for (int j = 0; j < kOTiles; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[j][e] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < kPSteps; ++kk)
#pragma unroll
    for (int pair = 0; pair < kOTiles / 2; ++pair) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, v + mma::smem_offset(kk * mma::kK + mma::ldm_v_row(lane),
                                                2 * pair * mma::kN + mma::ldm_v_col(lane), D));
      mma_16816<T>(o[2 * pair], pa[kk], b[0], b[1]);
      mma_16816<T>(o[2 * pair + 1], pa[kk], b[2], b[3]);
    }

  // O / sum through the warp's own 16 rows of the q tile, then 16-byte units to the tokens' pixels
  const float inv[2] = {1.0f / row_sum[0], 1.0f / row_sum[1]};
#pragma unroll
  for (int j = 0; j < kOTiles; ++j)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int e0 = 2 * half;
      *reinterpret_cast<uint32_t*>(q + mma::smem_offset(r0 + mma::c_row(lane, e0), j * mma::kN + mma::c_col(lane, e0),
                                                        D)) = pack2<T>(o[j][e0] * inv[half], o[j][e0 + 1] * inv[half]);
    }
  __syncwarp();
  T* out = static_cast<T*>(args.out);
  if (vector) {
    static_assert(mma::out_units(D) % 32 == 0, "the same number of output units per lane");
#pragma unroll
    for (int round = 0; round < mma::out_units(D) / 32; ++round) {
      const int unit = lane + 32 * round, row = r0 + mma::out_unit_row(unit, D), col = mma::out_unit_col(unit, D);
      const int64_t p = pixel[row];
      if (row < n && p >= 0)
        store_unit(out + mma::map_offset(p, c, 0, 0, h, D, col), load_unit(q + mma::smem_offset(row, col, D)));
    }
    return;
  }
#pragma unroll 1
  for (int idx = lane; idx < mma::kRowsPerWarp * D; idx += 32) {  // trips: 0 if vector else mma::kRowsPerWarp * D / 32
    const int row = r0 + idx / D, col = idx % D;
    const int64_t p = pixel[row];
    if (row < n && p >= 0) out[mma::map_offset(p, c, 0, 0, h, D, col)] = q[mma::smem_offset(row, col, D)];
  }
}

template <typename T, int D>
cudaError_t launch(const AttentionForwardArgs& args, cudaStream_t stream) {
  const int64_t blocks = args.batch * args.grid.windows_per_image * args.heads;
  if (blocks > 0x7fffffff) return cudaErrorInvalidConfiguration;  // gridDim.x limit
  const int64_t smem = flash_forward_smem_bytes(D);
  cudaError_t status = cudaFuncSetAttribute(attention_flash_forward_kernel<T, D>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (status != cudaSuccess) return status;
  const void* pointers[] = {args.qkv, args.pad_qkv, args.out};
  const bool vector = vector_io_aligned(pointers, 3);
  attention_flash_forward_kernel<T, D><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(args, vector);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_attention_flash_forward(const AttentionForwardArgs& args, cudaStream_t stream) {
  if (!flash_forward_supported(args.dtype == DType::kFloat32 ? 4 : 2, args.grid.tokens, args.head_dim))
    return cudaErrorInvalidValue;
  if (args.batch * args.grid.windows_per_image * args.heads == 0) return cudaSuccess;
  return dispatch_head_dim(args.head_dim, [&](auto head_dim) {
    constexpr int D = decltype(head_dim)::value;
    if (args.dtype == DType::kFloat16) return launch<__half, D>(args, stream);
    return launch<__nv_bfloat16, D>(args, stream);
  });
}

}  // namespace cuda
}  // namespace swin_kernels
