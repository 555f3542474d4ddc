// Backward of (shifted) window attention on CUDA in the flash-attention style, selected by
// SWIN_KERNELS_CUDA_KERNELS=flash (kernel_limits.h) for fp16/bf16 maps without padding tokens (every axis a multiple
// of its window); the verified kernel of attention_backward.cu runs everything else and stays the default until a
// GPU has run this one.
//
// One block per (head, run of up to flash::kMaxWindowsPerBlock consecutive windows of an image), 4 warps, the head's
// bias tile staged once (flash_ops.cuh). Per window the block gathers q, k, v and dO (16-byte units, padded rows)
// and lse; warp w owns query rows 16w..16w+15 and keeps in registers
//   S = q k^T and dP = dO v^T (mma.sync m16n8k16), P = 2^(S scale log2e + bias (+ mask) - lse log2e) renormalised
//   by its row sum (as the verified kernel: rows of dS then sum to zero), D_i = sum_j P_ij dP_ij (quad shuffles),
//   dS = P (dP - D_i), the block's d_bias accumulator += dS (each entry owned by one lane: summed over the block's
//   windows in order), dQ = dS k scale;
// P and dS go to shared memory (16-bit, padded rows); after one barrier warp w computes, for keys 16w..16w+15,
//   dK = dS^T q scale and dV = P^T dO (A fragments by ldmatrix.trans of the P/dS tiles).
// dQ, dK, dV are staged in the warp's own (no longer read) rows of the v and k tiles and stored as 16-byte units
// into grad_qkv. Each block writes its d_bias partial sum; reduce_partials (attention_backward.cu) adds the blocks up
// in a fixed order: deterministic, no atomics. The index arithmetic is mma_layout.h's and flash_window.h's, simulated
// on the host (csrc/tests/test_mma_layout.cpp).
#include "flash_ops.cuh"
#include "launch_api.h"

namespace swin_kernels {
namespace cuda {
namespace {

// The kTile x D tile (padded rows) of the head slice at `offset` of the rows of a (B, [D,] H, W, row_elements) map
// at the window's tokens; zeros for padding and the slots past N. 16-byte units.
template <int D, typename T>
__device__ __forceinline__ void load_rows_padded(const T* map, const int64_t* pixel, int64_t row_elements,
                                                 int64_t offset, T* tile) {
  constexpr int kUnitsPerRow = D / kUnit<T>, kUnits = kTile * kUnitsPerRow;
  static_assert(D % kUnit<T> == 0 && kUnits % kThreads == 0, "whole units, the same number per thread");
#pragma unroll
  for (int round = 0; round < kUnits / kThreads; ++round) {
    const int unit = threadIdx.x + round * kThreads, t = unit / kUnitsPerRow, e = (unit % kUnitsPerRow) * kUnit<T>;
    const int64_t p = pixel[t];
    store_unit(tile + mma::smem_offset(t, e, D),
               p >= 0 ? load_unit(map + p * row_elements + offset + e) : make_uint4(0, 0, 0, 0));
  }
}

// acc (a warp's 16 x D C fragments) times factor, through rows r0..r0+15 of `stage` (a padded tile the warp alone
// uses now), as 16-byte units into the slice at `offset` of the map rows of the tokens r0.. < n that are real.
template <int D, typename T>
__device__ __forceinline__ void store_fragments(const float (&acc)[D / 8][4], float factor, int r0, int n, int lane,
                                                T* stage, const int64_t* pixel, T* map, int64_t row_elements,
                                                int64_t offset) {
#pragma unroll
  for (int j = 0; j < D / 8; ++j)
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int e0 = 2 * half;
      *reinterpret_cast<uint32_t*>(stage + mma::smem_offset(r0 + mma::c_row(lane, e0), j * mma::kN + mma::c_col(lane, e0),
                                                            D)) = pack2<T>(acc[j][e0] * factor, acc[j][e0 + 1] * factor);
    }
  __syncwarp();
  static_assert(mma::out_units(D) % 32 == 0, "the same number of output units per lane");
#pragma unroll
  for (int round = 0; round < mma::out_units(D) / 32; ++round) {
    const int unit = lane + 32 * round, row = r0 + mma::out_unit_row(unit, D), col = mma::out_unit_col(unit, D);
    const int64_t p = pixel[row];
    if (row < n && p >= 0)
      store_unit(map + p * row_elements + offset + col, load_unit(stage + mma::smem_offset(row, col, D)));
  }
  __syncwarp();  // the stage rows are read before the warp writes them again
}

// 3 blocks per SM (168 registers; 2 at head_dim 64, which needs more without spilling): the d_bias accumulators
// (32 floats) stay in registers.
template <int D>
constexpr int kFlashBackwardMinBlocks = D <= 48 ? 3 : 2;

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, kFlashBackwardMinBlocks<D>)
    attention_flash_backward_kernel(const AttentionBackwardArgs args) {
  extern __shared__ __align__(128) unsigned char smem[];
  constexpr int kTileElements = mma::smem_tile_elements(kTile, D);
  constexpr int kScoreElements = kTile * mma::score_pitch(kTile);
  constexpr int kNTiles = kTile / mma::kN;  // n-tiles of S and dP
  constexpr int kKSteps = D / mma::kK;      // k-steps of S = q k^T and dP = dO v^T
  constexpr int kPSteps = kTile / mma::kK;  // k-steps over the 64 token slots (dQ, dK, dV)
  constexpr int kOTiles = D / mma::kN;      // n-tiles of dQ, dK, dV
  static_assert(D % 16 == 0, "head_dim a multiple of 16");
  T* q = reinterpret_cast<T*>(smem);
  T* k = q + kTileElements;
  T* v = k + kTileElements;
  T* dout = v + kTileElements;
  T* p_tile = dout + kTileElements;
  T* ds_tile = p_tile + kScoreElements;
  float* bias_tile = reinterpret_cast<float*>(ds_tile + kScoreElements);
  int64_t* pixel = reinterpret_cast<int64_t*>(bias_tile + kTile * mma::bias_pitch(kTile));
  int* region = reinterpret_cast<int*>(pixel + kTile);
  float* row_lse = reinterpret_cast<float*>(region + kTile);  // lse log2(e) of the window's rows (0 past N)

  const maps::WindowGrid& g = args.grid;
  const int64_t b = static_cast<int64_t>(blockIdx.z) * gridDim.y + blockIdx.y;  // the image
  if (b >= args.batch) return;  // past the batch in the last z-slice (batches above 65535 images)
  const int heads = args.heads, n = g.tokens;
  const int h = blockIdx.x % heads, run = blockIdx.x / heads;
  const int windows_per_block = static_cast<int>(args.windows_per_chunk);
  const int first = run * windows_per_block;
  const int last = min(first + windows_per_block, static_cast<int>(g.windows_per_image));
  const int64_t c = static_cast<int64_t>(heads) * D, c3 = 3 * c, head = static_cast<int64_t>(h) * D;
  const T* qkv = static_cast<const T*>(args.qkv);
  const T* pad = static_cast<const T*>(args.pad_qkv);
  const T* grad_out = static_cast<const T*>(args.grad_out);
  T* grad_qkv = static_cast<T*>(args.grad_qkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r0 = warp * mma::kRowsPerWarp;  // the warp's query rows, then its key rows
  const float scale_log2 = args.scale * kLog2e;

  stage_bias_tile(static_cast<const T*>(args.bias), h, n, bias_tile);  // synchronised by the loop's first barrier

  const int t = threadIdx.x % kTile;  // the token slot of the first kTile threads
  const uint32_t packed_offset = flash::pack_offset(maps::token_offset(g, t));  // the same in every window
  flash::WindowCell cell = flash::window_cell(g, first);
  const float* lse = args.lse + mma::lse_offset(b * g.windows_per_image + first, heads, h, n, 0);
  float dbias[kNTiles][4];
#pragma unroll
  for (int j = 0; j < kNTiles; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) dbias[j][e] = 0.0f;

#pragma unroll 1
  // trips: windows_per_block
  for (int w = first; w < last; ++w, cell = flash::next_cell(g, cell), lse += static_cast<int64_t>(heads) * n) {
    __syncthreads();  // the previous window's tiles are consumed (and the bias tile is staged)
    if (threadIdx.x < kTile) {
      const flash::TokenSlot slot = flash::token_slot(g, flash::cell_origin(g, cell), flash::unpack_offset(packed_offset));
      pixel[t] = t >= n ? -2 : slot.pixel < 0 ? -1 : b * g.pixels + slot.pixel;
      region[t] = t < n ? slot.region : -1;
      row_lse[t] = t < n ? lse[t] * kLog2e : 0.0f;
    }
    __syncthreads();
    load_qkv_padded<D>(qkv, pad, pixel, h, c, q, k, v);
    load_rows_padded<D>(grad_out, pixel, c, head, dout);  // padding is cropped: no gradient
    __syncthreads();

    // S = q k^T, dP = dO v^T
    uint32_t qa[kKSteps][4], da[kKSteps][4];
#pragma unroll
    for (int kk = 0; kk < kKSteps; ++kk) {
      const int at = mma::smem_offset(r0 + mma::ldm_a_row(lane), kk * mma::kK + mma::ldm_a_col(lane), D);
      ldmatrix_x4(qa[kk], q + at);
      ldmatrix_x4(da[kk], dout + at);
    }
    float s[kNTiles][4], dp[kNTiles][4];
#pragma unroll
    for (int j = 0; j < kNTiles; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[j][e] = dp[j][e] = 0.0f;
#pragma unroll
    for (int pair = 0; pair < kNTiles / 2; ++pair)
#pragma unroll
      for (int kk = 0; kk < kKSteps; ++kk) {
        const int at = mma::smem_offset(2 * pair * mma::kN + mma::ldm_kt_row(lane), kk * mma::kK + mma::ldm_kt_col(lane), D);
        uint32_t bk[4], bv[4];
        ldmatrix_x4(bk, k + at);
        ldmatrix_x4(bv, v + at);
        mma_16816<T>(s[2 * pair], qa[kk], bk[0], bk[1]);
        mma_16816<T>(s[2 * pair + 1], qa[kk], bk[2], bk[3]);
        mma_16816<T>(dp[2 * pair], da[kk], bv[0], bv[1]);
        mma_16816<T>(dp[2 * pair + 1], da[kk], bv[2], bv[3]);
      }

    // P = 2^(S scale log2e + bias (+ mask) - lse log2e), renormalised per row; zero in the rows past N
    const int first_region = region[0];
    const bool masked = __any_sync(0xffffffffu, (lane < n && region[lane] != first_region) ||
                                                    (lane + 32 < n && region[lane + 32] != first_region));
    float row_sum[2] = {0.0f, 0.0f}, row_dot[2] = {0.0f, 0.0f};
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int row = r0 + mma::c_row(lane, 2 * half), own = region[row];
      const float row_lse2 = row_lse[row];
#pragma unroll
      for (int j = 0; j < kNTiles; ++j) {
        const int col = j * mma::kN + mma::c_col(lane, 2 * half);
        const float2 bias2 = *reinterpret_cast<const float2*>(bias_tile + mma::bias_offset(row, col, kTile));
        float x0 = fmaf(s[j][2 * half], scale_log2, bias2.x), x1 = fmaf(s[j][2 * half + 1], scale_log2, bias2.y);
        if (masked) {
          const int2 other = *reinterpret_cast<const int2*>(region + col);
          if (other.x != own) x0 += maps::kShiftMaskValue * kLog2e;
          if (other.y != own) x1 += maps::kShiftMaskValue * kLog2e;
        }
        s[j][2 * half] = exp2_approx(x0 - row_lse2);
        s[j][2 * half + 1] = exp2_approx(x1 - row_lse2);
        row_sum[half] += s[j][2 * half] + s[j][2 * half + 1];
      }
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      row_sum[half] += __shfl_xor_sync(0xffffffffu, row_sum[half], 1);
      row_sum[half] += __shfl_xor_sync(0xffffffffu, row_sum[half], 2);
      const float inv = r0 + mma::c_row(lane, 2 * half) < n ? __fdividef(1.0f, row_sum[half]) : 0.0f;
#pragma unroll
      for (int j = 0; j < kNTiles; ++j) {
        s[j][2 * half] *= inv;
        s[j][2 * half + 1] *= inv;
        row_dot[half] = fmaf(s[j][2 * half], dp[j][2 * half], row_dot[half]);
        row_dot[half] = fmaf(s[j][2 * half + 1], dp[j][2 * half + 1], row_dot[half]);
      }
      row_dot[half] += __shfl_xor_sync(0xffffffffu, row_dot[half], 1);
      row_dot[half] += __shfl_xor_sync(0xffffffffu, row_dot[half], 2);
    }
    // dS = P (dP - D_i) into d_bias; P and dS to their tiles; dS as the A fragments of dQ = dS k
    uint32_t dsa[kPSteps][4];
#pragma unroll
    for (int kk = 0; kk < kPSteps; ++kk)
#pragma unroll
      for (int reg = 0; reg < 4; ++reg) {
        const int j = mma::p_tile_of_a_register(kk, reg), e0 = mma::p_first_c_of_a_register(reg), half = e0 >> 1;
        const float ds0 = s[j][e0] * (dp[j][e0] - row_dot[half]), ds1 = s[j][e0 + 1] * (dp[j][e0 + 1] - row_dot[half]);
        dbias[j][e0] += ds0;
        dbias[j][e0 + 1] += ds1;
        dsa[kk][reg] = pack2<T>(ds0, ds1);
        const int at = mma::score_offset(r0 + mma::c_row(lane, e0), j * mma::kN + mma::c_col(lane, e0), kTile);
        *reinterpret_cast<uint32_t*>(ds_tile + at) = dsa[kk][reg];
        *reinterpret_cast<uint32_t*>(p_tile + at) = pack2<T>(s[j][e0], s[j][e0 + 1]);
      }
    float acc[kOTiles][4];
    mma_regs_times_smem<kOTiles, kPSteps, D>(acc, dsa, k, lane);
    __syncthreads();  // P and dS complete; k and v no longer read
    store_fragments<D>(acc, args.scale, r0, n, lane, v, pixel, grad_qkv, c3, head);  // dQ

    // dK = dS^T q scale, dV = P^T dO for the warp's keys r0..r0+15
    float acc_v[kOTiles][4];
#pragma unroll
    for (int j = 0; j < kOTiles; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[j][e] = acc_v[j][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kPSteps; ++kk) {
      const int at = mma::score_offset(kk * mma::kK + mma::ldm_at_row(lane), r0 + mma::ldm_at_col(lane), kTile);
      uint32_t dsta[4], pta[4];
      ldmatrix_x4_trans(dsta, ds_tile + at);
      ldmatrix_x4_trans(pta, p_tile + at);
#pragma unroll
      for (int pair = 0; pair < kOTiles / 2; ++pair) {
        const int bt = mma::smem_offset(kk * mma::kK + mma::ldm_v_row(lane), 2 * pair * mma::kN + mma::ldm_v_col(lane), D);
        uint32_t bq[4], bo[4];
        ldmatrix_x4_trans(bq, q + bt);
        ldmatrix_x4_trans(bo, dout + bt);
        mma_16816<T>(acc[2 * pair], dsta, bq[0], bq[1]);
        mma_16816<T>(acc[2 * pair + 1], dsta, bq[2], bq[3]);
        mma_16816<T>(acc_v[2 * pair], pta, bo[0], bo[1]);
        mma_16816<T>(acc_v[2 * pair + 1], pta, bo[2], bo[3]);
      }
    }
    store_fragments<D>(acc, args.scale, r0, n, lane, k, pixel, grad_qkv, c3, c + head);    // dK
    store_fragments<D>(acc_v, 1.0f, r0, n, lane, v, pixel, grad_qkv, c3, 2 * c + head);  // dV
  }

  // the block's d_bias partial sum: entry (i, j) < (N, N) from the lane that owns it
  const int64_t chunk = b * ((g.windows_per_image + windows_per_block - 1) / windows_per_block) + run;
  float* partial = args.bias_partials + (chunk * heads + h) * static_cast<int64_t>(n) * n;
#pragma unroll
  for (int j = 0; j < kNTiles; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = r0 + mma::c_row(lane, e), col = j * mma::kN + mma::c_col(lane, e);
      if (row < n && col < n) partial[row * n + col] = dbias[j][e];
    }
}

template <typename T, int D>
cudaError_t launch(const AttentionBackwardArgs& args, cudaStream_t stream) {
  dim3 grid;
  cudaError_t status = flash_grid(args.batch, args.grid.windows_per_image, args.windows_per_chunk, args.heads, &grid);
  if (status != cudaSuccess) return status;
  const int64_t smem = flash_backward_smem_bytes(D);
  status = cudaFuncSetAttribute(attention_flash_backward_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(smem));
  if (status != cudaSuccess) return status;
  attention_flash_backward_kernel<T, D><<<grid, kThreads, smem, stream>>>(args);
  if ((status = cudaGetLastError()) != cudaSuccess) return status;
  const int64_t n = args.grid.tokens;
  status = launch_reduce_partials(args.dtype, args.bias_partials, args.chunks, args.heads * n * n, args.grad_bias,
                                  stream);
  if (status != cudaSuccess) return status;
  // no padding tokens: grad_pad_qkv is zero
  return cudaMemsetAsync(args.grad_pad, 0, 3 * static_cast<size_t>(args.heads) * D * sizeof(T), stream);
}

}  // namespace

cudaError_t launch_attention_flash_backward(const AttentionBackwardArgs& args, cudaStream_t stream) {
  if (!flash_backward_supported(args.dtype == DType::kFloat32 ? 4 : 2, args.grid, args.head_dim) ||
      !flash_grid_supported(args.batch, args.grid) ||
      args.chunks != flash_backward_chunks(args.batch, args.grid.windows_per_image, args.heads) ||
      args.windows_per_chunk != flash::windows_per_block(args.batch, args.grid.windows_per_image, args.heads))
    return cudaErrorInvalidValue;
  const void* pointers[] = {args.qkv, args.pad_qkv, args.grad_out, args.grad_qkv};
  if (!vector_io_aligned(pointers, 4)) return cudaErrorInvalidValue;  // the caller runs the verified kernel
  if (args.chunks * args.heads == 0) return cudaSuccess;
  return dispatch_head_dim(args.head_dim, [&](auto head_dim) {
    constexpr int D = decltype(head_dim)::value;
    if (args.dtype == DType::kFloat16) return launch<__half, D>(args, stream);
    return launch<__nv_bfloat16, D>(args, stream);
  });
}

}  // namespace cuda
}  // namespace swin_kernels
