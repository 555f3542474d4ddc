// Backward of (shifted) window attention on CUDA: one block per (chunk of windows, head), 128 threads; one
// instantiation per element type and head_dim D.
//
// Per window the block gathers q (scaled), k, v, dO (zero for cropped padding tokens) and lse_i, recomputes
// P from exp(S + bias + mask - lse), renormalised per row, and then
//   dV = P^T dO,  dP = dO V^T,  D_i = sum_j P_ij dP_ij (= dO_i . O_i),  dS = P (dP - D),
//   dQ = dS K * scale,  dK = dS^T (Q * scale)
// (tensor cores for fp16/bf16), writing dq/dk/dv to (B, [D,] H, W, 3C) at the tokens' pixels (16-byte units where
// the pointers allow). Padded tokens' rows (in windows that hold padding) and dS are summed in shared memory (each
// entry by one thread) over the chunk's windows in a fixed order and written as the chunk's partial sums;
// reduce_partials adds the chunks up in a fixed order. No atomics: bit-identical run to run.
#include "attention_smem.h"
#include "block_ops.cuh"
#include "launch_api.h"

namespace swin_kernels {
namespace cuda {
namespace {

// Rows t < n of product (kTile x D, fp32) times factor into grad_qkv at part offset `part` (0 q, c k, 2c v) of head
// h. In a window that holds padding, the padded tokens' rows are added to pad_acc (thread e owns column e and walks
// the tokens in order); in one that holds none there is nothing to add.
template <int D, typename T>
__device__ __forceinline__ void store_gradient(const float* product, int n, int h, float factor, int64_t part,
                                               int64_t c3, const int64_t* pixel, bool padded, T* grad_qkv,
                                               float* pad_acc, bool vector) {
  store_rows<D>(product, factor, pixel, grad_qkv, c3, part + static_cast<int64_t>(h) * D, vector);
  static_assert(D <= kThreads, "one thread per column of pad_acc");
  if (padded && threadIdx.x < D) {
    const int e = threadIdx.x;
    float sum = pad_acc[e];
#pragma unroll 1
    for (int t = 0; t < n; ++t)  // trips: n if padded else 0
      if (pixel[t] == -1) sum += product[t * D + e] * factor;
    pad_acc[e] = sum;
  }
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 2) attention_backward_kernel(const AttentionBackwardArgs args,
                                                                        const bool vector) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int heads = args.heads, n = args.grid.tokens;
  const AttentionSmem layout = attention_smem(sizeof(T), D, true);
  T* q = reinterpret_cast<T*>(smem + layout.q);
  T* k = reinterpret_cast<T*>(smem + layout.k);
  T* v = reinterpret_cast<T*>(smem + layout.v);
  T* dout = reinterpret_cast<T*>(smem + layout.dout);
  float* scores = reinterpret_cast<float*>(smem + layout.scores);
  float* dscores = reinterpret_cast<float*>(smem + layout.dscores);
  T* probs = reinterpret_cast<T*>(smem + layout.probs);
  float* product = reinterpret_cast<float*>(smem + layout.product);
  float* row_d = reinterpret_cast<float*>(smem + layout.row_d);
  float* row_lse = reinterpret_cast<float*>(smem + layout.row_lse);
  float* pad_acc = reinterpret_cast<float*>(smem + layout.pad_acc);
  float* bias_acc = reinterpret_cast<float*>(smem + layout.bias_acc);
  int64_t* pixel = reinterpret_cast<int64_t*>(smem + layout.pixel);
  int* region = reinterpret_cast<int*>(smem + layout.region);

  const int64_t chunk = blockIdx.x / heads;
  const int h = blockIdx.x % heads;
  const int64_t c = static_cast<int64_t>(heads) * D, c3 = 3 * c, head = static_cast<int64_t>(h) * D;
  const int64_t windows = args.batch * args.grid.windows_per_image;
  const int64_t first = chunk * args.windows_per_chunk;
  const int64_t last = first + args.windows_per_chunk < windows ? first + args.windows_per_chunk : windows;
  const T* qkv = static_cast<const T*>(args.qkv);
  const T* pad = static_cast<const T*>(args.pad_qkv);
  const T* bias = static_cast<const T*>(args.bias);
  const T* grad_out = static_cast<const T*>(args.grad_out);
  T* grad_qkv = static_cast<T*>(args.grad_qkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  static_assert(kTile * kTile % kThreads == 0, "the same number of score entries per thread");
#pragma unroll
  for (int round = 0; round < kTile * kTile / kThreads; ++round) bias_acc[threadIdx.x + round * kThreads] = 0.0f;
#pragma unroll
  for (int round = 0; round < (3 * D + kThreads - 1) / kThreads; ++round)
    if (threadIdx.x + round * kThreads < 3 * D) pad_acc[threadIdx.x + round * kThreads] = 0.0f;

#pragma unroll 1
  for (int64_t bw = first; bw < last; ++bw) {  // trips: args.windows_per_chunk
    const bool padded = load_window(args.grid, bw, pixel, region);  // synchronises
    load_qkv_tiles<D>(qkv, pad, pixel, h, c, args.scale, q, k, v, vector);
    load_rows<D>(grad_out, pixel, c, head, dout, vector);  // padding is cropped: no gradient
    if (threadIdx.x < kTile) {
      const int t = threadIdx.x;
      row_lse[t] = t < n ? args.lse[(bw * heads + h) * n + t] : 0.0f;
    }
    __syncthreads();

    block_gemm<kTile, kTile, D, RowMajor, ColMajor>(q, D, k, D, scores, kTile);  // S = q k^T
    __syncthreads();
    // P = e / sum(e), e = exp(S + bias + mask - lse), one warp per row: normalising by the recomputed sum keeps
    // every row summing to 1 (lse alone leaves a rounding factor shared by the row), so dS rows sum to zero.
#pragma unroll 1
    for (int i = warp; i < n; i += kWarps) {  // trips: cdiv(n, kWarps)
      float e[2];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int j = lane + 32 * half;
        e[half] = j < n ? softmax_exp<T>(biased_score(scores[i * kTile + j], bias, h, i, j, n, region) - row_lse[i])
                        : 0.0f;
      }
      const float sum = warp_sum(e[0] + e[1]);
      const float inv = 1.0f / sum;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int idx = i * kTile + lane + 32 * half;
        scores[idx] = e[half] * inv;
        probs[idx] = from_float<T>(e[half] * inv);
      }
    }
    zero_rows<float>(scores, n);  // the slots past N: P's rows there are zeros
    zero_rows<T>(probs, n);
    __syncthreads();

    block_gemm<kTile, D, kTile, ColMajor, RowMajor>(probs, kTile, dout, D, product, D);  // dV = P^T dO
    __syncthreads();
    store_gradient<D>(product, n, h, 1.0f, 2 * c, c3, pixel, padded, grad_qkv, pad_acc + 2 * D, vector);
    __syncthreads();

    block_gemm<kTile, kTile, D, RowMajor, ColMajor>(dout, D, v, D, dscores, kTile);  // dP = dO V^T
    __syncthreads();
    // D_i = sum_j P_ij dP_ij, one warp per row; 0 past N, where P's rows are zeros
#pragma unroll 1
    for (int i = warp; i < n; i += kWarps) {  // trips: cdiv(n, kWarps)
      const float dot = warp_sum(scores[i * kTile + lane] * dscores[i * kTile + lane] +
                                 scores[i * kTile + lane + 32] * dscores[i * kTile + lane + 32]);
      if (lane == 0) row_d[i] = dot;
    }
    if (threadIdx.x >= n && threadIdx.x < kTile) row_d[threadIdx.x] = 0.0f;
    __syncthreads();
    // dS = P (dP - D); grad_bias += dS
    // trips: kTile * kTile / kThreads, unrolled 4
#pragma unroll 4
    for (int round = 0; round < kTile * kTile / kThreads; ++round) {
      const int idx = threadIdx.x + round * kThreads;
      const float ds = scores[idx] * (dscores[idx] - row_d[idx / kTile]);
      bias_acc[idx] += ds;
      probs[idx] = from_float<T>(ds);
    }
    __syncthreads();

    block_gemm<kTile, D, kTile, RowMajor, RowMajor>(probs, kTile, k, D, product, D);  // dQ = dS K
    __syncthreads();
    store_gradient<D>(product, n, h, args.scale, 0, c3, pixel, padded, grad_qkv, pad_acc, vector);
    __syncthreads();
    block_gemm<kTile, D, kTile, ColMajor, RowMajor>(probs, kTile, q, D, product, D);  // dK = dS^T (q * scale)
    __syncthreads();
    store_gradient<D>(product, n, h, 1.0f, c, c3, pixel, padded, grad_qkv, pad_acc + D, vector);
    __syncthreads();
  }

  float* bias_out = args.bias_partials + (chunk * heads + h) * n * n;
#pragma unroll 1
  for (int idx = threadIdx.x; idx < n * n; idx += kThreads)  // trips: cdiv(n * n, kThreads)
    bias_out[idx] = bias_acc[(idx / n) * kTile + idx % n];
#pragma unroll
  for (int round = 0; round < (3 * D + kThreads - 1) / kThreads; ++round) {
    const int e = threadIdx.x + round * kThreads;
    if (e < 3 * D) args.pad_partials[chunk * c3 + (e / D) * c + head + e % D] = pad_acc[e];
  }
}

// out[e] = the sum over chunks of partials[chunk, e]. A block adds up kReduceColumns consecutive entries: its
// kReduceGroups warps each sum every kReduceGroups-th chunk of them in chunk order, then the first warp adds the
// group sums in group order. A fixed order: bit-identical run to run, with every SM busy and several loads in
// flight per thread (the partials are chunks x entries floats, ~30 MB for Swin-T stage 1).
constexpr int kReduceColumns = 32, kReduceGroups = 32;

template <typename T>
__global__ void __launch_bounds__(kReduceColumns * kReduceGroups) reduce_partials(const float* partials,
                                                                                  int64_t chunks, int64_t size,
                                                                                  T* out) {
  __shared__ float group_sums[kReduceGroups][kReduceColumns + 1];
  const int column = threadIdx.x % kReduceColumns, group = threadIdx.x / kReduceColumns;
  const int64_t e = static_cast<int64_t>(blockIdx.x) * kReduceColumns + column;
  float total = 0.0f;
  if (e < size) {
    // trips: cdiv(chunks, kReduceGroups), unrolled 4
#pragma unroll 4
    for (int64_t chunk = group; chunk < chunks; chunk += kReduceGroups) total += partials[chunk * size + e];
  }
  group_sums[group][column] = total;
  __syncthreads();
  if (group == 0 && e < size) {
    float sum = group_sums[0][column];
#pragma unroll
    for (int g = 1; g < kReduceGroups; ++g) sum += group_sums[g][column];
    out[e] = from_float<T>(sum);
  }
}

template <typename T, int D>
cudaError_t launch(const AttentionBackwardArgs& args, cudaStream_t stream) {
  const int64_t smem = attention_smem_bytes(sizeof(T), D, true);
  cudaError_t status = cudaFuncSetAttribute(attention_backward_kernel<T, D>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (status != cudaSuccess) return status;
  const void* pointers[] = {args.qkv, args.pad_qkv, args.grad_out, args.grad_qkv};
  const bool vector = vector_io_aligned(pointers, 4);
  const int64_t blocks = args.chunks * args.heads;  // chunks <= 1024 (backward_windows_per_chunk)
  attention_backward_kernel<T, D><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(args, vector);
  if ((status = cudaGetLastError()) != cudaSuccess) return status;
  const int64_t n = args.grid.tokens, bias_size = args.heads * n * n, pad_size = 3LL * args.heads * D;
  constexpr int threads = kReduceColumns * kReduceGroups;
  reduce_partials<T><<<static_cast<unsigned>((bias_size + kReduceColumns - 1) / kReduceColumns), threads, 0, stream>>>(
      args.bias_partials, args.chunks, bias_size, static_cast<T*>(args.grad_bias));
  if ((status = cudaGetLastError()) != cudaSuccess) return status;
  reduce_partials<T><<<static_cast<unsigned>((pad_size + kReduceColumns - 1) / kReduceColumns), threads, 0, stream>>>(
      args.pad_partials, args.chunks, pad_size, static_cast<T*>(args.grad_pad));
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_reduce_partials(DType dtype, const float* partials, int64_t chunks, int64_t size, void* out,
                                   cudaStream_t stream) {
  if (size == 0) return cudaSuccess;
  return dispatch_dtype(dtype, [&](auto element) {
    using T = decltype(element);
    constexpr int threads = kReduceColumns * kReduceGroups;
    reduce_partials<T><<<static_cast<unsigned>((size + kReduceColumns - 1) / kReduceColumns), threads, 0, stream>>>(
        partials, chunks, size, static_cast<T*>(out));
    return cudaGetLastError();
  });
}

cudaError_t launch_attention_backward(const AttentionBackwardArgs& args, cudaStream_t stream) {
  if (args.chunks * args.heads == 0) return cudaSuccess;
  return dispatch_dtype(args.dtype, [&](auto element) {
    return dispatch_head_dim(args.head_dim, [&](auto head_dim) {
      return launch<decltype(element), decltype(head_dim)::value>(args, stream);
    });
  });
}

}  // namespace cuda
}  // namespace swin_kernels
