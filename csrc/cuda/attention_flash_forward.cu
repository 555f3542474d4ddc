// Forward of (shifted) window attention on CUDA in the flash-attention style: one block per (head, run of up to
// flash::kMaxWindowsPerBlock consecutive windows of an image), 4 warps, each warp owning 16 query rows of the
// window's kTile (64) token slots; fp16 and bf16, one instantiation per head_dim D. Selected by
// SWIN_KERNELS_CUDA_KERNELS=flash (kernel_limits.h); until a GPU has run it the default is the verified kernel of
// attention_forward.cu, which also serves fp32 and unaligned pointers.
//
// The block stages its head's bias once (fp32, times log2 e, -inf in the columns past N). Per window it gathers q,
// k and v of its head straight from the (B, [D,] H, W, 3C) map through maps::token_pixel
// (padding -> pad_qkv, slots past N -> zeros; 16-byte units where the pointers allow) into padded shared memory
// (rows of D + 8 elements: conflict-free ldmatrix). Each warp then keeps everything in registers: its q fragments
// (ldmatrix), S = q k^T over all 64 key slots (mma.sync m16n8k16, fp32 accumulators, k fragments by ldmatrix),
// scale and bias (base 2: one FFMA with the staged tile) and shift mask (region ids, only in windows that hold
// several regions), the row max and sum over the 4 lanes of a row (two shuffles each), P = 2^(S - max) rounded to
// the element type straight into A fragments, O = P v (v fragments by ldmatrix.trans), O / sum,
// lse = (max + log2(sum)) ln 2. O goes through the warp's own 16 rows of the q tile to 16-byte
// stores at the tokens' pixels. A window of at most kTile tokens is one key tile: the softmax needs no online
// rescaling. All fragment, ldmatrix, padding and staging arithmetic is mma_layout.h's, tested on the host
// (csrc/tests/test_mma_layout.cpp).
#include "flash_ops.cuh"
#include "launch_api.h"

namespace swin_kernels {
namespace cuda {
namespace {


// 6 blocks per SM (80 registers: 24 resident warps) where head_dim <= 32 fits that without spilling; 4 above.
template <int D>
constexpr int kFlashMinBlocks = D <= 32 ? 6 : 4;

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, kFlashMinBlocks<D>)
    attention_flash_forward_kernel(const AttentionForwardArgs args, const int windows_per_block) {
  extern __shared__ __align__(128) unsigned char smem[];
  constexpr int kTileElements = mma::smem_tile_elements(kTile, D);
  constexpr int kNTiles = kTile / mma::kN;  // n-tiles of S (8 columns each)
  constexpr int kKSteps = D / mma::kK;      // k-steps of S = q k^T
  constexpr int kPSteps = kTile / mma::kK;  // k-steps of O = P v
  constexpr int kOTiles = D / mma::kN;      // n-tiles of O
  static_assert(D % 16 == 0, "head_dim a multiple of 16");
  T* q = reinterpret_cast<T*>(smem);
  T* k = q + kTileElements;
  T* v = k + kTileElements;
  float* bias_tile = reinterpret_cast<float*>(v + kTileElements);
  int64_t* pixel = reinterpret_cast<int64_t*>(bias_tile + kTile * mma::bias_pitch(kTile));
  int* region = reinterpret_cast<int*>(pixel + kTile);

  const maps::WindowGrid& g = args.grid;
  const int64_t b = static_cast<int64_t>(blockIdx.z) * gridDim.y + blockIdx.y;  // the image
  if (b >= args.batch) return;  // past the batch in the last z-slice (batches above 65535 images)
  const int heads = args.heads, n = g.tokens;
  const int h = blockIdx.x % heads;
  const int first = (blockIdx.x / heads) * windows_per_block;
  const int last = min(first + windows_per_block, static_cast<int>(g.windows_per_image));
  const int64_t c = static_cast<int64_t>(heads) * D;
  const T* qkv = static_cast<const T*>(args.qkv);
  const T* pad = static_cast<const T*>(args.pad_qkv);
  const T* bias = static_cast<const T*>(args.bias);
  T* out = static_cast<T*>(args.out);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int r0 = warp * mma::kRowsPerWarp;
  const float scale_log2 = args.scale * kLog2e;

  stage_bias_tile(bias, h, n, bias_tile);  // synchronised by the loop's first barrier

  const int t = threadIdx.x % kTile;  // the token slot of the first kTile threads
  const uint32_t packed_offset = flash::pack_offset(maps::token_offset(g, t));  // the same in every window
  flash::WindowCell cell = flash::window_cell(g, first);
  float* lse = args.lse + mma::lse_offset(b * g.windows_per_image + first, heads, h, n, 0);  // the window's rows
#pragma unroll 1
  // trips: windows_per_block
  for (int w = first; w < last; ++w, cell = flash::next_cell(g, cell), lse += static_cast<int64_t>(heads) * n) {
    __syncthreads();  // the previous window's tiles and pixels are consumed (and the bias tile is staged)
    if (threadIdx.x < kTile) {
      const flash::TokenSlot slot = flash::token_slot(g, flash::cell_origin(g, cell), flash::unpack_offset(packed_offset));
      pixel[t] = t >= n ? -2 : slot.pixel < 0 ? -1 : b * g.pixels + slot.pixel;
      region[t] = t < n ? slot.region : -1;
    }
    __syncthreads();
    load_qkv_padded<D>(qkv, pad, pixel, h, c, q, k, v);
    __syncthreads();
    if (r0 >= n) continue;  // no real query row in this warp

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
        uint32_t bk[4];
        ldmatrix_x4(bk, k + mma::smem_offset(2 * pair * mma::kN + mma::ldm_kt_row(lane),
                                             kk * mma::kK + mma::ldm_kt_col(lane), D));
        mma_16816<T>(s[2 * pair], qa[kk], bk[0], bk[1]);
        mma_16816<T>(s[2 * pair + 1], qa[kk], bk[2], bk[3]);
      }

    // base-2 logits: S scale log2e + bias log2e (+ the mask where the window holds several regions)
    const int first_region = region[0];
    const bool masked = __any_sync(0xffffffffu, (lane < n && region[lane] != first_region) ||
                                                    (lane + 32 < n && region[lane + 32] != first_region));
    int row_of[2];
    float row_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      row_of[half] = r0 + mma::c_row(lane, 2 * half);
#pragma unroll
      for (int j = 0; j < kNTiles; ++j) {
        const int col = j * mma::kN + mma::c_col(lane, 2 * half);
        const float2 bias2 = *reinterpret_cast<const float2*>(bias_tile + mma::bias_offset(row_of[half], col, kTile));
        s[j][2 * half] = fmaf(s[j][2 * half], scale_log2, bias2.x);
        s[j][2 * half + 1] = fmaf(s[j][2 * half + 1], scale_log2, bias2.y);
      }
    }
    if (masked) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int own = region[row_of[half]];
#pragma unroll
        for (int j = 0; j < kNTiles; ++j) {
          const int2 other = *reinterpret_cast<const int2*>(region + j * mma::kN + mma::c_col(lane, 2 * half));
          if (other.x != own) s[j][2 * half] += maps::kShiftMaskValue * kLog2e;
          if (other.y != own) s[j][2 * half + 1] += maps::kShiftMaskValue * kLog2e;
        }
      }
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
#pragma unroll
      for (int j = 0; j < kNTiles; ++j)
        row_max[half] = fmaxf(row_max[half], fmaxf(s[j][2 * half], s[j][2 * half + 1]));
      row_max[half] = fmaxf(row_max[half], __shfl_xor_sync(0xffffffffu, row_max[half], 1));
      row_max[half] = fmaxf(row_max[half], __shfl_xor_sync(0xffffffffu, row_max[half], 2));
    }
    // P = 2^(S - max), rounded to T, straight into the A fragments of O = P v
    float row_sum[2] = {0.0f, 0.0f};
    uint32_t pa[kPSteps][4];
#pragma unroll
    for (int kk = 0; kk < kPSteps; ++kk)
#pragma unroll
      for (int reg = 0; reg < 4; ++reg) {
        const int j = mma::p_tile_of_a_register(kk, reg), e0 = mma::p_first_c_of_a_register(reg), half = e0 >> 1;
        const float p0 = exp2_approx(s[j][e0] - row_max[half]), p1 = exp2_approx(s[j][e0 + 1] - row_max[half]);
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
        if (row_of[half] < n) lse[row_of[half]] = (row_max[half] + __log2f(row_sum[half])) * kLn2;
    }

    // O = P v
    float o[kOTiles][4];
    mma_regs_times_smem<kOTiles, kPSteps, D>(o, pa, v, lane);

    // O / sum through the warp's own 16 rows of the q tile, then 16-byte units to the tokens' pixels
    const float inv[2] = {__fdividef(1.0f, row_sum[0]), __fdividef(1.0f, row_sum[1])};  // sums >= 1
#pragma unroll
    for (int j = 0; j < kOTiles; ++j)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int e0 = 2 * half;
        *reinterpret_cast<uint32_t*>(q + mma::smem_offset(r0 + mma::c_row(lane, e0),
                                                          j * mma::kN + mma::c_col(lane, e0), D)) =
            pack2<T>(o[j][e0] * inv[half], o[j][e0 + 1] * inv[half]);
      }
    __syncwarp();
    static_assert(mma::out_units(D) % 32 == 0, "the same number of output units per lane");
#pragma unroll
    for (int round = 0; round < mma::out_units(D) / 32; ++round) {
      const int unit = lane + 32 * round, row = r0 + mma::out_unit_row(unit, D), col = mma::out_unit_col(unit, D);
      const int64_t p = pixel[row];
      if (row < n && p >= 0)
        store_unit(out + mma::map_offset(p, c, 0, 0, h, D, col), load_unit(q + mma::smem_offset(row, col, D)));
    }
  }
}

template <typename T, int D>
cudaError_t launch(const AttentionForwardArgs& args, cudaStream_t stream) {
  const int64_t per_image = args.grid.windows_per_image;
  const int windows_per_block = flash::windows_per_block(args.batch, per_image, args.heads);
  dim3 grid;
  cudaError_t status = flash_grid(args.batch, per_image, windows_per_block, args.heads, &grid);
  if (status != cudaSuccess) return status;
  const int64_t smem = flash_forward_smem_bytes(D);
  status = cudaFuncSetAttribute(attention_flash_forward_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(smem));
  if (status != cudaSuccess) return status;
  attention_flash_forward_kernel<T, D><<<grid, kThreads, smem, stream>>>(args, windows_per_block);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_attention_flash_forward(const AttentionForwardArgs& args, cudaStream_t stream) {
  if (!flash_forward_supported(args.dtype == DType::kFloat32 ? 4 : 2, args.grid.tokens, args.head_dim) ||
      !flash_grid_supported(args.batch, args.grid))
    return cudaErrorInvalidValue;
  if (args.batch * args.grid.windows_per_image * args.heads == 0) return cudaSuccess;
  const void* pointers[] = {args.qkv, args.pad_qkv, args.out};
  if (!vector_io_aligned(pointers, 3)) return launch_attention_forward(args, stream);  // element-wise: the verified
  return dispatch_head_dim(args.head_dim, [&](auto head_dim) {
    constexpr int D = decltype(head_dim)::value;
    if (args.dtype == DType::kFloat16) return launch<__half, D>(args, stream);
    return launch<__nv_bfloat16, D>(args, stream);
  });
}

}  // namespace cuda
}  // namespace swin_kernels
