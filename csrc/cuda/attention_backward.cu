// Backward of (shifted) window attention on CUDA: one block per (chunk of windows, head), 128 threads.
//
// Per window the block gathers q (scaled), k, v, dO (zero for cropped padding tokens) and lse_i, recomputes
// P from exp(S + bias + mask - lse), renormalised per row, and then
//   dV = P^T dO,  dP = dO V^T,  D_i = sum_j P_ij dP_ij (= dO_i . O_i),  dS = P (dP - D),
//   dQ = dS K * scale,  dK = dS^T (Q * scale)
// (tensor cores for fp16/bf16), writing dq/dk/dv to (B, H, W, 3C) at the tokens' pixels. Padded tokens' rows and
// dS are summed in shared memory (each entry by one thread) over the chunk's windows in a fixed order and written
// as the chunk's partial sums; reduce_partials adds the chunks up in order. No atomics: bit-identical run to run.
#include "attention_smem.h"
#include "block_ops.cuh"
#include "launch_api.h"

namespace swin_kernels {
namespace cuda {
namespace {

// Rows t < n of product (n x d, fp32) times factor into grad_qkv at part offset `part` (0 q, c k, 2c v) of head h;
// padded tokens' rows are added to pad_acc (thread e owns column e and walks the tokens in order).
template <typename T>
__device__ void store_gradient(const float* product, int n, int d, int h, float factor, int64_t part, int64_t c3,
                               const int64_t* pixel, T* grad_qkv, float* pad_acc) {
  for (int idx = threadIdx.x; idx < n * d; idx += kThreads) {
    const int t = idx / d, e = idx % d;
    if (pixel[t] >= 0)
      grad_qkv[pixel[t] * c3 + part + static_cast<int64_t>(h) * d + e] = from_float<T>(product[idx] * factor);
  }
  for (int e = threadIdx.x; e < d; e += kThreads) {
    float sum = pad_acc[e];
    for (int t = 0; t < n; ++t)
      if (pixel[t] == -1) sum += product[t * d + e] * factor;
    pad_acc[e] = sum;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads, 2) attention_backward_kernel(const AttentionBackwardArgs args) {
  extern __shared__ __align__(128) unsigned char smem[];
  const int d = args.head_dim, heads = args.heads, n = args.grid.tokens;
  const AttentionSmem layout = attention_smem(sizeof(T), d, true);
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
  const int64_t c = static_cast<int64_t>(heads) * d, c3 = 3 * c;
  const int64_t windows = args.batch * args.grid.windows_per_image;
  const int64_t first = chunk * args.windows_per_chunk;
  const int64_t last = first + args.windows_per_chunk < windows ? first + args.windows_per_chunk : windows;
  const T* qkv = static_cast<const T*>(args.qkv);
  const T* pad = static_cast<const T*>(args.pad_qkv);
  const T* bias = static_cast<const T*>(args.bias);
  const T* grad_out = static_cast<const T*>(args.grad_out);
  T* grad_qkv = static_cast<T*>(args.grad_qkv);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  for (int idx = threadIdx.x; idx < kTile * kTile; idx += kThreads) bias_acc[idx] = 0.0f;
  for (int e = threadIdx.x; e < 3 * d; e += kThreads) pad_acc[e] = 0.0f;

  for (int64_t bw = first; bw < last; ++bw) {
    load_window(args.grid, bw, pixel, region);
    __syncthreads();
    load_qkv_tiles(qkv, pad, pixel, h, d, c, args.scale, q, k, v);
    for (int idx = threadIdx.x; idx < kTile * d; idx += kThreads) {
      const int64_t p = pixel[idx / d];  // padding is cropped: no gradient
      dout[idx] = p >= 0 ? grad_out[p * c + static_cast<int64_t>(h) * d + idx % d] : from_float<T>(0.0f);
    }
    for (int t = threadIdx.x; t < kTile; t += kThreads) row_lse[t] = t < n ? args.lse[(bw * heads + h) * n + t] : 0.0f;
    __syncthreads();

    block_gemm<RowMajor, ColMajor>(kTile, kTile, d, q, d, k, d, scores, kTile);  // S = q k^T
    __syncthreads();
    // P = e / sum(e), e = exp(S + bias + mask - lse), one warp per row: normalising by the recomputed sum keeps
    // every row summing to 1 (lse alone leaves a rounding factor shared by the row), so dS rows sum to zero.
    for (int i = warp; i < kTile; i += kWarps) {
      float e[2];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int j = lane + 32 * half;
        e[half] = (i < n && j < n)
                      ? softmax_exp<T>(biased_score(scores[i * kTile + j], bias, h, i, j, n, region) - row_lse[i])
                      : 0.0f;
      }
      const float sum = warp_sum(e[0] + e[1]);
      const float inv = i < n ? 1.0f / sum : 0.0f;
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int idx = i * kTile + lane + 32 * half;
        scores[idx] = e[half] * inv;
        probs[idx] = from_float<T>(e[half] * inv);
      }
    }
    __syncthreads();

    block_gemm<ColMajor, RowMajor>(kTile, d, kTile, probs, kTile, dout, d, product, d);  // dV = P^T dO
    __syncthreads();
    store_gradient(product, n, d, h, 1.0f, 2 * c, c3, pixel, grad_qkv, pad_acc + 2 * d);
    __syncthreads();

    block_gemm<RowMajor, ColMajor>(kTile, kTile, d, dout, d, v, d, dscores, kTile);  // dP = dO V^T
    __syncthreads();
    for (int i = warp; i < kTile; i += kWarps) {  // D_i = sum_j P_ij dP_ij, one warp per row
      const float dot = warp_sum(scores[i * kTile + lane] * dscores[i * kTile + lane] +
                                 scores[i * kTile + lane + 32] * dscores[i * kTile + lane + 32]);
      if (lane == 0) row_d[i] = dot;
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < kTile * kTile; idx += kThreads) {  // dS = P (dP - D); grad_bias += dS
      const float ds = scores[idx] * (dscores[idx] - row_d[idx / kTile]);
      bias_acc[idx] += ds;
      probs[idx] = from_float<T>(ds);
    }
    __syncthreads();

    block_gemm<RowMajor, RowMajor>(kTile, d, kTile, probs, kTile, k, d, product, d);  // dQ = dS K
    __syncthreads();
    store_gradient(product, n, d, h, args.scale, 0, c3, pixel, grad_qkv, pad_acc);
    __syncthreads();
    block_gemm<ColMajor, RowMajor>(kTile, d, kTile, probs, kTile, q, d, product, d);  // dK = dS^T (q * scale)
    __syncthreads();
    store_gradient(product, n, d, h, 1.0f, c, c3, pixel, grad_qkv, pad_acc + d);
    __syncthreads();
  }

  float* bias_out = args.bias_partials + (chunk * heads + h) * n * n;
  for (int idx = threadIdx.x; idx < n * n; idx += kThreads) bias_out[idx] = bias_acc[(idx / n) * kTile + idx % n];
  for (int e = threadIdx.x; e < 3 * d; e += kThreads) {
    const int part = e / d;
    args.pad_partials[chunk * c3 + part * c + static_cast<int64_t>(h) * d + e % d] = pad_acc[e];
  }
}

// out[e] = sum over chunks, in order, of partials[chunk, e].
template <typename T>
__global__ void reduce_partials(const float* partials, int64_t chunks, int64_t size, T* out) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < size;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float total = 0.0f;
    for (int64_t chunk = 0; chunk < chunks; ++chunk) total += partials[chunk * size + e];
    out[e] = from_float<T>(total);
  }
}

template <typename T>
cudaError_t launch(const AttentionBackwardArgs& args, cudaStream_t stream) {
  const int64_t smem = attention_smem(sizeof(T), args.head_dim, true).bytes;
  cudaError_t status = cudaFuncSetAttribute(attention_backward_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                            static_cast<int>(smem));
  if (status != cudaSuccess) return status;
  const int64_t blocks = args.chunks * args.heads;  // chunks <= 1024 (backward_windows_per_chunk)
  attention_backward_kernel<T><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(args);
  if ((status = cudaGetLastError()) != cudaSuccess) return status;
  const int64_t n = args.grid.tokens, bias_size = args.heads * n * n, pad_size = 3LL * args.heads * args.head_dim;
  reduce_partials<T><<<static_cast<unsigned>((bias_size + 255) / 256), 256, 0, stream>>>(
      args.bias_partials, args.chunks, bias_size, static_cast<T*>(args.grad_bias));
  if ((status = cudaGetLastError()) != cudaSuccess) return status;
  reduce_partials<T><<<static_cast<unsigned>((pad_size + 255) / 256), 256, 0, stream>>>(
      args.pad_partials, args.chunks, pad_size, static_cast<T*>(args.grad_pad));
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_attention_backward(const AttentionBackwardArgs& args, cudaStream_t stream) {
  if (args.chunks * args.heads == 0) return cudaSuccess;
  return dispatch_dtype(args.dtype, [&](auto element) { return launch<decltype(element)>(args, stream); });
}

}  // namespace cuda
}  // namespace swin_kernels
