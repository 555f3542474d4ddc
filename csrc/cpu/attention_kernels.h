// Single-pass (shifted) window attention on the CPU, written once and compiled per instruction set.
//
// The including file defines, after its `#pragma GCC target(...)`:
//   SWIN_VECTOR_BYTES  bytes of one SIMD register (64 for AVX-512, 32 for AVX2, 16 for SSE)
//   SWIN_TILE_ROWS     rows of a register tile, SWIN_TILE_VECTORS its widest width in SIMD vectors
//   SWIN_HALF_F16C     512 / 256: convert float16 with the AVX-512 / F16C instructions, 0: in portable code
//   SWIN_NATIVE_BF16   1: the bfloat16 forward multiplies bfloat16 pairs with AVX512-BF16 (native_bf16.h)
//   SWIN_KERNEL_TABLE  name of the KernelTable it exports (e.g. kAvx512Kernels), SWIN_ISA_NAME its name,
//                      SWIN_OTHER_ISA_NAME the name of the build whose code its types other than bfloat16 run
// Everything else is in an anonymous namespace, so the per-ISA copies never meet at link time.
//
// Per window the kernel first copies the qkv rows of its N tokens from the (B, H, W, 3C) map, found through
// maps::token_pixel, into a per-thread stage (padding -> pad_qkv): whole rows, so the reads stream instead of
// picking 3 x head_dim values out of every row once per head. bfloat16 / float16 rows are converted to float
// on the way in, and results rounded back on the way out, so every type runs the float arithmetic below.
// Then per head, with q, k, v read from the stage:
//   S = q k^T                     register-tiled GEMM, N x N' (N' = N rounded up to the SIMD width)
//   S = S*scale + bias + mask     bias from a per-call table padded with -inf columns, mask from region ids
//   P = exp(S - max)              rows four at a time; row sums give 1/l and lse = max + log(l)
//   O = P v / l                   into the output stage, whose rows go to (B, H, W, C) at the tokens' pixels
//                                 (padding tokens are cropped)
// The backward stages qkv and dO the same way, recomputes P from exp(S - lse) (renormalised per row) and, with
// D_i = sum_j P_ij dP_ij (= dO_i . O_i, so the output need not be read back):
//   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - D),  dQ = dS K * scale,  dK = dS^T Q * scale,
// collects dq/dk/dv rows in a gradient stage written to (B, H, W, 3C) (each real token once), and adds padded
// tokens' rows and dS into the chunk's own partial sums of grad_pad_qkv and grad_bias (in float for the half
// types, rounded once after the reduction over chunks).
#pragma once

#ifndef SWIN_NATIVE_BF16
#define SWIN_NATIVE_BF16 0
#endif

#include <utility>

#include "conversions.h"
#include "kernel_api.h"

namespace swin_kernels {
namespace cpu {
namespace {

constexpr int kTileRows = SWIN_TILE_ROWS;
constexpr int kTileVectors = SWIN_TILE_VECTORS;
constexpr int64_t kAlign = 64;

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  typedef float V __attribute__((vector_size(SWIN_VECTOR_BYTES)));
  typedef int32_t I __attribute__((vector_size(SWIN_VECTOR_BYTES)));
  static constexpr int lanes = SWIN_VECTOR_BYTES / 4;
};
template <>
struct Simd<double> {
  typedef double V __attribute__((vector_size(SWIN_VECTOR_BYTES)));
  static constexpr int lanes = SWIN_VECTOR_BYTES / 8;
};

template <typename V>
inline V load(const void* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V>
inline void store(void* p, V v) {
  __builtin_memcpy(p, &v, sizeof(V));
}
template <typename V, typename T>
inline V broadcast(T x) {
  return V{} + x;
}

// ------------------------------------------------------------------------------------------------ GEMM
// C[r, :] = sum_k A(r, k) B[k, :] for a tile of R rows and CV SIMD vectors of columns, accumulated in
// registers. A(r, k) = a[r * a_row + k * a_depth], so a transposed operand costs nothing (broadcast loads).
template <typename T, int R, int CV>
inline __attribute__((always_inline)) void gemm_tile(int64_t depth, const T* a, int64_t a_row, int64_t a_depth,
                                                     const T* b, int64_t ldb, T* c, int64_t ldc) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes;
  V acc[R][CV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < CV; ++v) acc[r][v] = V{};
  for (int64_t k = 0; k < depth; ++k) {
    V bk[CV];
    for (int v = 0; v < CV; ++v) bk[v] = load<V>(b + k * ldb + v * L);
    for (int r = 0; r < R; ++r) {
      const T x = a[r * a_row + k * a_depth];
      for (int v = 0; v < CV; ++v) acc[r][v] += bk[v] * x;
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < CV; ++v) store(c + r * ldc + v * L, acc[r][v]);
}

template <typename T, int R, int CV>
inline void gemm_tail(int64_t vectors, int64_t depth, const T* a, int64_t a_row, int64_t a_depth, const T* b,
                      int64_t ldb, T* c, int64_t ldc) {
  if constexpr (CV > 0) {
    if (vectors == CV)
      gemm_tile<T, R, CV>(depth, a, a_row, a_depth, b, ldb, c, ldc);
    else
      gemm_tail<T, R, CV - 1>(vectors, depth, a, a_row, a_depth, b, ldb, c, ldc);
  }
}

// C (rows x cols) = A (rows x depth) B (depth x cols); cols a multiple of the SIMD width. Rows are done in
// tiles of kTileRows, so A and C must be addressable up to the next multiple (the callers' tiles are).
template <typename T>
void gemm(int64_t rows, int64_t cols, int64_t depth, const T* a, int64_t a_row, int64_t a_depth, const T* b,
          int64_t ldb, T* c, int64_t ldc) {
  constexpr int L = Simd<T>::lanes;
  const int64_t vectors = cols / L;
  for (int64_t r0 = 0; r0 < rows; r0 += kTileRows) {
    const T* ar = a + r0 * a_row;
    T* cr = c + r0 * ldc;
    int64_t v0 = 0;
    for (; v0 + kTileVectors <= vectors; v0 += kTileVectors)
      gemm_tile<T, kTileRows, kTileVectors>(depth, ar, a_row, a_depth, b + v0 * L, ldb, cr + v0 * L, ldc);
    if (v0 < vectors)
      gemm_tail<T, kTileRows, kTileVectors - 1>(vectors - v0, depth, ar, a_row, a_depth, b + v0 * L, ldb,
                                                cr + v0 * L, ldc);
  }
}

// ---------------------------------------------------------------------------------------------- softmax
// Sum / max across the lanes of one vector: halve the vector until two lanes are left (a fixed order).
template <typename T, int Bytes>
struct VectorOf {
  typedef T type __attribute__((vector_size(Bytes)));
};
// Halves by shuffles, not by copying through the vector's address: an accumulator whose address is taken stays
// in memory (it is not split into registers), and the loops feeding it then wait on stores.
template <typename V, int... Is>
inline auto low_half(V v, std::integer_sequence<int, Is...>) {
  return __builtin_shufflevector(v, v, Is...);
}
template <typename V, int... Is>
inline auto high_half(V v, std::integer_sequence<int, Is...>) {
  return __builtin_shufflevector(v, v, (Is + static_cast<int>(sizeof...(Is)))...);
}
template <typename T, int Bytes>
inline T lane_sum_of(typename VectorOf<T, Bytes>::type v) {
  if constexpr (Bytes == 2 * sizeof(T)) {
    return v[0] + v[1];
  } else {
    constexpr auto half = std::make_integer_sequence<int, Bytes / 2 / sizeof(T)>{};
    return lane_sum_of<T, Bytes / 2>(low_half(v, half) + high_half(v, half));
  }
}
template <typename T, int Bytes>
inline T lane_max_of(typename VectorOf<T, Bytes>::type v) {
  if constexpr (Bytes == 2 * sizeof(T)) {
    return v[0] > v[1] ? v[0] : v[1];
  } else {
    constexpr auto half = std::make_integer_sequence<int, Bytes / 2 / sizeof(T)>{};
    const auto low = low_half(v, half), high = high_half(v, half);
    return lane_max_of<T, Bytes / 2>(high > low ? high : low);
  }
}
template <typename T>
inline T lane_sum(typename Simd<T>::V v) {
  return lane_sum_of<T, SWIN_VECTOR_BYTES>(v);
}
template <typename T>
inline T lane_max(typename Simd<T>::V v) {
  return lane_max_of<T, SWIN_VECTOR_BYTES>(v);
}

// exp on a float vector for x <= ~88 (the callers pass x - rowmax <= 0): x = n ln2 + r with n = round(x / ln2)
// taken from t = x log2(e) + 1.5 * 2^23 (whose low mantissa bits are n), e^r by a degree-7 polynomial, 2^n
// built in the exponent bits. Inputs below ln(FLT_MIN) give 0 (so -inf -> 0); relative error ~1e-7.
inline Simd<float>::V exp_vector(Simd<float>::V x) {
  using V = Simd<float>::V;
  using I = Simd<float>::I;
  const V lowest = broadcast<V>(-87.33654475f);
  const V magic = broadcast<V>(12582912.0f);  // 1.5 * 2^23
  const V xc = x < lowest ? lowest : x;
  const V t = xc * 1.44269504088896341f + magic;
  const V n = t - magic;
  const V r = (xc - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 = 0.693359375 - 2.12194440e-4 (split)
  V y = broadcast<V>(1.9875691500e-4f);
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  const I bits = ((I)t << 23) + (127 << 23);  // (bits(t) - bits(magic)) << 23 == n << 23: magic's low bits are 0
  const V result = y * (V)bits;
  return x < lowest ? V{} : result;
}

// log on a float vector for x > 0 (normal): x = 2^e m with m in [sqrt(1/2), sqrt(2)), log(m) = f - f^2/2 + f^3 P(f)
// for f = m - 1 (degree-8 P), plus e ln2 (split in two parts). Relative error ~1e-7.
inline Simd<float>::V log_vector(Simd<float>::V x) {
  using V = Simd<float>::V;
  using I = Simd<float>::I;
  const I bits = (I)x;
  V e = __builtin_convertvector(((bits >> 23) & 0xff) - 127, V);
  V m = (V)((bits & 0x7fffff) | 0x3f800000);  // [1, 2)
  const auto big = m > 1.41421356237f;
  m = big ? m * 0.5f : m;
  e = big ? e + 1.0f : e;
  const V f = m - 1.0f, z = f * f;
  V y = broadcast<V>(7.0376836292e-2f);
  y = y * f - 1.1514610310e-1f;
  y = y * f + 1.1676998740e-1f;
  y = y * f - 1.2420140846e-1f;
  y = y * f + 1.4249322787e-1f;
  y = y * f - 1.6668057665e-1f;
  y = y * f + 2.0000714765e-1f;
  y = y * f - 2.4999993993e-1f;
  y = y * f + 3.3333331174e-1f;
  y = y * f * z;
  y = y + e * -2.12194440e-4f - 0.5f * z;
  return f + y + e * 0.693359375f;
}

// lse[i] = max[i] + log(sum[i]), inv[i] = 1 / sum[i] for i < n (the arrays hold n rounded up to the SIMD width).
inline void finish_rows(const float* max, const float* sum, int64_t n, float* lse, float* inv) {
  using V = Simd<float>::V;
  constexpr int L = Simd<float>::lanes;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    const V l = load<V>(sum + i);
    store(lse + i, load<V>(max + i) + log_vector(l));
    store(inv + i, 1.0f / l);
  }
  for (; i < n; ++i) {
    lse[i] = max[i] + __builtin_logf(sum[i]);
    inv[i] = 1.0f / sum[i];
  }
}
inline void finish_rows(const double* max, const double* sum, int64_t n, double* lse, double* inv) {
  for (int64_t i = 0; i < n; ++i) {
    lse[i] = max[i] + __builtin_log(sum[i]);
    inv[i] = 1.0 / sum[i];
  }
}

// Padded bias of every head: table[h, i, j] = bias[h, i, j] (0 without bias) for j < n, -inf for n <= j < ldn,
// so a scores row needs no tail handling and its padding columns come out of the exp as 0.
template <typename In, typename T>
void build_bias_table(int64_t heads, int64_t n, int64_t ldn, const In* bias, T* table) {
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < n; ++i) {
      T* row = table + (h * n + i) * ldn;
      for (int64_t j = 0; j < n; ++j) row[j] = bias ? to_compute(bias[(h * n + i) * n + j]) : T(0);
      for (int64_t j = n; j < ldn; ++j) row[j] = -__builtin_inf();
    }
}

// One scores row s = q.k: x = s * scale + table + (region[j] != region_i ? -100 : 0), in place.
template <typename T>
inline typename Simd<T>::V biased_scores(T* row, int64_t j, T scale, const T* table_row, const T* regions,
                                         bool masked, T region_i) {
  using V = typename Simd<T>::V;
  V x = load<V>(row + j) * scale + load<V>(table_row + j);
  if (masked) x = load<V>(regions + j) != broadcast<V>(region_i) ? x + static_cast<T>(maps::kShiftMaskValue) : x;
  return x;
}

// Forward rows i0 .. i0+RB-1: row <- exp(x - max(x)), row_max[i] = max(x), row_sum[i] = sum(exp). Two passes over
// the rows (L1); RB rows at a time so their max/sum reductions overlap instead of waiting on each other.
template <int RB>
inline void softmax_rows(float* s, int64_t ldn, int64_t i0, float scale, const float* table, const float* regions,
                         bool masked, float* row_max, float* row_sum) {
  using V = Simd<float>::V;
  constexpr int L = Simd<float>::lanes;
  V m[RB];
  for (int r = 0; r < RB; ++r) m[r] = broadcast<V>(-__builtin_inff());
  for (int64_t j = 0; j < ldn; j += L)
    for (int r = 0; r < RB; ++r) {
      float* row = s + (i0 + r) * ldn;
      const V x = biased_scores(row, j, scale, table + (i0 + r) * ldn, regions, masked, regions[i0 + r]);
      store(row + j, x);
      m[r] = x > m[r] ? x : m[r];
    }
  float shift[RB];
  V sum[RB];
  for (int r = 0; r < RB; ++r) shift[r] = lane_max<float>(m[r]), sum[r] = V{};
  for (int64_t j = 0; j < ldn; j += L)
    for (int r = 0; r < RB; ++r) {
      float* row = s + (i0 + r) * ldn;
      const V e = exp_vector(load<V>(row + j) - shift[r]);
      store(row + j, e);
      sum[r] += e;
    }
  for (int r = 0; r < RB; ++r) row_max[i0 + r] = shift[r], row_sum[i0 + r] = lane_sum<float>(sum[r]);
}

// All n rows of a float scores tile.
inline void softmax_tile(float* s, int64_t n, int64_t ldn, float scale, const float* table, const float* regions,
                         bool masked, float* row_max, float* row_sum) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) softmax_rows<4>(s, ldn, i, scale, table, regions, masked, row_max, row_sum);
  for (; i < n; ++i) softmax_rows<1>(s, ldn, i, scale, table, regions, masked, row_max, row_sum);
}

inline double softmax_row(double* row, int64_t ldn, double scale, const double* table_row, const double* regions,
                          bool masked, double region_i, double* row_max) {
  using V = Simd<double>::V;
  constexpr int L = Simd<double>::lanes;
  V m = broadcast<V>(-__builtin_inf());
  for (int64_t j = 0; j < ldn; j += L) {
    const V x = biased_scores(row, j, scale, table_row, regions, masked, region_i);
    store(row + j, x);
    m = x > m ? x : m;
  }
  const double shift = lane_max<double>(m);
  double sum = 0.0;
  for (int64_t j = 0; j < ldn; ++j) {
    row[j] = __builtin_exp(row[j] - shift);
    sum += row[j];
  }
  *row_max = shift;
  return sum;
}

inline void softmax_tile(double* s, int64_t n, int64_t ldn, double scale, const double* table, const double* regions,
                         bool masked, double* row_max, double* row_sum) {
  for (int64_t i = 0; i < n; ++i)
    row_sum[i] = softmax_row(s + i * ldn, ldn, scale, table + i * ldn, regions, masked, regions[i], row_max + i);
}

// Backward rows i0 .. i0+RB-1: the probabilities again, P = e / sum(e) with e = exp(x - lse). lse alone would give
// them up to a factor exp(rounding of lse) shared by the whole row; normalising by the recomputed sum makes every
// row add up to 1 as the forward's did, so the softmax gradient's rows keep summing to zero (no systematic error).
template <int RB>
inline void probabilities_rows(float* s, int64_t ldn, int64_t i0, float scale, const float* table,
                               const float* regions, bool masked, const float* lse) {
  using V = Simd<float>::V;
  constexpr int L = Simd<float>::lanes;
  V sum[RB];
  for (int r = 0; r < RB; ++r) sum[r] = V{};
  for (int64_t j = 0; j < ldn; j += L)
    for (int r = 0; r < RB; ++r) {
      float* row = s + (i0 + r) * ldn;
      const V x = biased_scores(row, j, scale, table + (i0 + r) * ldn, regions, masked, regions[i0 + r]);
      const V e = exp_vector(x - lse[i0 + r]);
      store(row + j, e);
      sum[r] += e;
    }
  float inv[RB];
  for (int r = 0; r < RB; ++r) inv[r] = 1.0f / lane_sum<float>(sum[r]);
  for (int64_t j = 0; j < ldn; j += L)
    for (int r = 0; r < RB; ++r) {
      float* row = s + (i0 + r) * ldn;
      store(row + j, load<V>(row + j) * inv[r]);
    }
}

inline void probabilities_tile(float* s, int64_t n, int64_t ldn, float scale, const float* table,
                               const float* regions, bool masked, const float* lse) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) probabilities_rows<4>(s, ldn, i, scale, table, regions, masked, lse);
  for (; i < n; ++i) probabilities_rows<1>(s, ldn, i, scale, table, regions, masked, lse);
}
inline void probabilities_tile(double* s, int64_t n, int64_t ldn, double scale, const double* table,
                               const double* regions, bool masked, const double* lse) {
  constexpr int L = Simd<double>::lanes;
  for (int64_t i = 0; i < n; ++i) {
    double* row = s + i * ldn;
    double sum = 0.0;
    for (int64_t j = 0; j < ldn; j += L) {
      const Simd<double>::V x = biased_scores(row, j, scale, table + i * ldn, regions, masked, regions[i]);
      for (int l = 0; l < L; ++l) sum += row[j + l] = __builtin_exp(x[l] - lse[i]);
    }
    for (int64_t j = 0; j < ldn; ++j) row[j] /= sum;
  }
}

// Backward rows i0 .. i0+RB-1 of the softmax gradient, in place in ds (holding dP):
//   D_i = sum_j P_ij dP_ij,  dS_ij = P_ij (dP_ij - D_i),  grad_bias[i, j] += dS_ij (j < n).
template <typename T, int RB>
inline void softmax_grad_rows(const T* p, T* ds, int64_t n, int64_t ldn, int64_t i0, T* grad_bias) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes;
  V acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = V{};
  for (int64_t j = 0; j < ldn; j += L)
    for (int r = 0; r < RB; ++r) acc[r] += load<V>(p + (i0 + r) * ldn + j) * load<V>(ds + (i0 + r) * ldn + j);
  for (int r = 0; r < RB; ++r) {
    const T di = lane_sum<T>(acc[r]);
    const T* pr = p + (i0 + r) * ldn;
    T* dr = ds + (i0 + r) * ldn;
    for (int64_t j = 0; j < ldn; j += L) store(dr + j, load<V>(pr + j) * (load<V>(dr + j) - di));
    T* gb = grad_bias + (i0 + r) * n;
    for (int64_t j = 0; j < n; ++j) gb[j] += dr[j];
  }
}

template <typename T>
inline void softmax_grad_tile(const T* p, T* ds, int64_t n, int64_t ldn, T* grad_bias) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) softmax_grad_rows<T, 4>(p, ds, n, ldn, i, grad_bias);
  for (; i < n; ++i) softmax_grad_rows<T, 1>(p, ds, n, ldn, i, grad_bias);
}

// ------------------------------------------------------------------------------------------ scratch tiles
struct Layout {
  int64_t n, d, ldn, ldd, rows;  // tokens, head dim, their SIMD-padded strides, rows padded to the tile
  int64_t c, c3;                 // heads * d, 3 * heads * d
};

template <typename T>
Layout layout_of(const AttentionProblem& p) {
  constexpr int L = Simd<T>::lanes;
  Layout lay;
  lay.n = p.grid.tokens;
  lay.d = p.head_dim;
  lay.ldn = maps::round_up(lay.n, L);
  lay.ldd = maps::round_up(lay.d, L);
  lay.rows = maps::round_up(lay.n, kTileRows);
  lay.c = static_cast<int64_t>(p.heads) * p.head_dim;
  lay.c3 = 3 * lay.c;
  return lay;
}

// Per-thread buffers, zeroed once (prepare_scratch): rows/columns past n or d are never written, so they stay zero.
// Stages have max(rows, ldn) + 1 rows (see carve).
template <typename T>
struct Tiles {
  T* qkv;      // stage: rows x 3C, the window's q|k|v rows
  T* out;      // stage: rows x C, O (forward)
  T* dout;     // stage: rows x C, dO (backward)
  T* grad;     // stage: rows x 3C, dq|dk|dv (backward)
  T* kt;       // d x ldn: k transposed (B operand of S)
  T* vt;       // d x ldn: v transposed (B operand of dP, backward)
  T* s;        // rows x ldn (+ rows of slack for transposed reads): scores, then P
  T* ds;       // rows x ldn (+ slack): dP, then dS (backward)
  T* product;  // rows x ldd: output of the N x d GEMMs
  T* regions;  // ldn region ids of the window's tokens
  T* row_values;   // rows: 1/l (forward)
  T* row_max;      // rows: max of the row's scores (forward)
  T* row_sum;      // rows: sum of the row's exps (forward)
  T* bias_table;   // heads x n x ldn: build_bias_table, once per call (bias_ready)
  T* pad;          // 3C: pad_qkv in the compute type (zeros without it), with the bias table
  T* p16;          // rows x ldn bfloat16: P rounded (native bfloat16 forward only)
  T* packed_v;     // ceil(n/2) x ldd bfloat16 pairs: v's rows interleaved (native bfloat16 forward only)
  int64_t* bias_ready;
  int64_t* pixel;  // n: the token's pixel (b*H*W + y*W + x), -1 for padding
};

template <typename T>
int64_t carve(const AttentionProblem& p, bool backward, char* base, Tiles<T>* tiles) {
  const Layout lay = layout_of<T>(p);
  int64_t offset = 0;
  auto take = [&](int64_t count) {
    T* at = base ? reinterpret_cast<T*>(base + offset) : nullptr;
    offset += maps::round_up(count * static_cast<int64_t>(sizeof(T)), kAlign);
    return at;
  };
  // stages: rows for the row tiles and the transposes (ldn), plus one: GEMM operands read ldd >= d columns
  const int64_t stage_rows = (lay.rows > lay.ldn ? lay.rows : lay.ldn) + 1;
  const int64_t square = lay.rows * lay.ldn + lay.rows;
  Tiles<T> t{};
  t.qkv = take(stage_rows * lay.c3);
  if (!backward) t.out = take(stage_rows * lay.c);
  t.kt = take(lay.d * lay.ldn);
  t.s = take(square);
  t.product = take(lay.rows * lay.ldd);
  t.regions = take(lay.ldn);
  t.row_values = take(lay.rows);
  t.row_max = take(lay.rows);
  t.row_sum = take(lay.rows);
  t.bias_table = take(static_cast<int64_t>(p.heads) * lay.n * lay.ldn);
  t.pad = take(lay.c3);
  if (backward) {
    t.dout = take(stage_rows * lay.c);
    t.grad = take(stage_rows * lay.c3);
    t.vt = take(lay.d * lay.ldn);
    t.ds = take(square);
  }
#if SWIN_NATIVE_BF16
  if (!backward) {
    t.p16 = take(lay.rows * lay.ldn / 2);
    t.packed_v = take((lay.n + 1) / 2 * lay.ldd);
  }
#endif
  t.pixel = base ? reinterpret_cast<int64_t*>(base + offset) : nullptr;
  offset += maps::round_up(lay.n * static_cast<int64_t>(sizeof(int64_t)), kAlign);
  t.bias_ready = base ? reinterpret_cast<int64_t*>(base + offset) : nullptr;
  offset += kAlign;
  if (tiles) *tiles = t;
  return offset + kAlign;  // room to align the base
}

template <typename T>
Tiles<T> tiles_in(const AttentionProblem& p, bool backward, void* scratch) {
  const int64_t address = reinterpret_cast<int64_t>(scratch);
  char* base = static_cast<char*>(scratch) + (maps::round_up(address, kAlign) - address);
  Tiles<T> t;
  carve<T>(p, backward, base, &t);
  return t;
}

int64_t scratch_bytes(const AttentionProblem& p, bool backward, bool is_double) {
  return is_double ? carve<double>(p, backward, nullptr, nullptr) : carve<float>(p, backward, nullptr, nullptr);
}

// Zero once: the tiles' padding rows and columns are never written afterwards.
void prepare_scratch(const AttentionProblem& p, bool backward, bool is_double, void* scratch) {
  __builtin_memset(scratch, 0, scratch_bytes(p, backward, is_double));
}

// Pixels and region ids of window bw (= b * nW + w) of the batch; true when its tokens span several regions.
template <typename T>
bool load_window(const maps::WindowGrid& g, int64_t bw, const Tiles<T>& t) {
  const int64_t b = bw / g.windows_per_image, w = bw % g.windows_per_image, image = b * g.pixels;
  const maps::WindowOrigin origin = maps::window_origin(g, w);
  for (int32_t i = 0; i < g.tokens; ++i) {
    const int64_t pixel = maps::token_pixel(g, origin, i);
    t.pixel[i] = pixel < 0 ? -1 : image + pixel;
    t.regions[i] = static_cast<T>(maps::token_region(g, origin, i));
  }
  return maps::window_is_masked(g, w);
}

// Once per call and thread: the bias table and the padding tokens' q/k/v in the compute type.
template <typename In, typename T>
void prepare_call(const AttentionProblem& p, const Layout& lay, const In* bias, const In* pad_qkv, const Tiles<T>& t) {
  if (*t.bias_ready) return;
  build_bias_table(p.heads, lay.n, lay.ldn, bias, t.bias_table);
  if (pad_qkv) load_row(pad_qkv, lay.c3, t.pad);  // else the zeros of prepare_scratch
  *t.bias_ready = 1;
}

// stage[i, :] = src[pixel_i, :] (width elements, converted), or fill (null: zeros) for padding tokens.
template <typename In, typename T>
inline void stage_rows(const Tiles<T>& t, int64_t n, const In* src, int64_t width, const T* fill, T* stage) {
  for (int64_t i = 0; i < n; ++i) {
    T* dst = stage + i * width;
    if (t.pixel[i] >= 0)
      load_row(src + t.pixel[i] * width, width, dst);
    else if (fill)
      __builtin_memcpy(dst, fill, width * sizeof(T));
    else
      __builtin_memset(dst, 0, width * sizeof(T));
  }
}

// In-register transpose of an L x L block (L = SIMD lanes): stage S exchanges bit S of the row and column
// indices by swapping the off-diagonal S x S sub-blocks of every 2S x 2S block; after all stages row and column
// have traded every bit.
template <int... Is>
struct Indices {};
template <int N, int... Is>
struct MakeIndices : MakeIndices<N - 1, N - 1, Is...> {};
template <int... Is>
struct MakeIndices<0, Is...> {
  using type = Indices<Is...>;
};

template <int S, int L>
constexpr int swap_low(int l) {  // row r (bit S clear): lanes with bit S set come from row r + S
  return (l & S) == 0 ? l : L + l - S;
}
template <int S, int L>
constexpr int swap_high(int l) {  // row r + S: lanes with bit S clear come from row r
  return (l & S) == 0 ? l + S : L + l;
}

template <int S, typename V, int... Is>
inline void swap_sub_blocks(V& a, V& b, Indices<Is...>) {
  constexpr int L = sizeof...(Is);
  const V low = __builtin_shufflevector(a, b, swap_low<S, L>(Is)...);
  const V high = __builtin_shufflevector(a, b, swap_high<S, L>(Is)...);
  a = low;
  b = high;
}

template <typename T, int S = Simd<T>::lanes / 2>
inline void transpose_block(typename Simd<T>::V* v) {
  constexpr int L = Simd<T>::lanes;
  if constexpr (S >= 1) {
    for (int r = 0; r < L; ++r)
      if ((r & S) == 0) swap_sub_blocks<S>(v[r], v[r + S], typename MakeIndices<L>::type{});
    transpose_block<T, S / 2>(v);
  }
}

// kt[e, i] = stage[i, e] for e < d, i < ldn: one head's k (or v) transposed, the B operand of the N x N GEMMs.
// The stage has ldn rows (zero past n), so the padding columns of kt come out zero.
template <typename T>
inline void transpose_head(const T* stage, int64_t stride, int64_t n, int64_t d, T* dst, int64_t ldn) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes;
  int64_t e0 = 0;
  for (; e0 + L <= d; e0 += L) {
    for (int64_t i0 = 0; i0 < ldn; i0 += L) {
      V block[L];
      for (int r = 0; r < L; ++r) block[r] = load<V>(stage + (i0 + r) * stride + e0);
      transpose_block<T>(block);
      for (int r = 0; r < L; ++r) store(dst + (e0 + r) * ldn + i0, block[r]);
    }
  }
  for (int64_t i = 0; i < n; ++i)  // columns past the last full block (d not a multiple of L)
    for (int64_t e = e0; e < d; ++e) dst[e * ldn + i] = stage[i * stride + e];
}

// stage[i, offset + e] = product[i, e] * factor (factor: per row when rows_factor, else the scalar).
template <typename T>
inline void store_head(const T* product, int64_t ldd, int64_t n, int64_t d, const T* row_factor, T factor, T* stage,
                       int64_t stride) {
  for (int64_t i = 0; i < n; ++i) {
    const T f = row_factor ? row_factor[i] : factor;
    const T* src = product + i * ldd;
    T* dst = stage + i * stride;
    for (int64_t e = 0; e < d; ++e) dst[e] = src[e] * f;
  }
}

// --------------------------------------------------------------------------------------------- forward
// In: the storage type of the tensors; T: the type everything is computed in.
template <typename In, typename T = Compute<In>>
void forward(const AttentionProblem& p, const ForwardArgs<In>& a, int64_t begin, int64_t end, void* scratch) {
  const Tiles<T> t = tiles_in<T>(p, false, scratch);
  const Layout lay = layout_of<T>(p);
  const int64_t n = lay.n, d = lay.d, c = lay.c, c3 = lay.c3, heads = p.heads;
  const T scale = static_cast<T>(p.scale);
  prepare_call(p, lay, a.bias, a.pad_qkv, t);
  for (int64_t bw = begin; bw < end; ++bw) {
    const bool masked = load_window(p.grid, bw, t);
    stage_rows(t, n, a.qkv, c3, t.pad, t.qkv);
    for (int64_t h = 0; h < heads; ++h) {
      const T* q = t.qkv + h * d;
      const T* v = t.qkv + 2 * c + h * d;
      transpose_head(t.qkv + c + h * d, c3, n, d, t.kt, lay.ldn);
      gemm<T>(n, lay.ldn, d, q, c3, 1, t.kt, lay.ldn, t.s, lay.ldn);  // S = q k^T
      const T* table = t.bias_table + h * n * lay.ldn;
      softmax_tile(t.s, n, lay.ldn, scale, table, t.regions, masked, t.row_max, t.row_sum);
      finish_rows(t.row_max, t.row_sum, n, a.lse + (bw * heads + h) * n, t.row_values);
      gemm<T>(n, lay.ldd, n, t.s, lay.ldn, 1, v, c3, t.product, lay.ldd);  // P v
      store_head(t.product, lay.ldd, n, d, t.row_values, T(1), t.out + h * d, c);
    }
    for (int64_t i = 0; i < n; ++i)  // padding tokens are cropped
      if (t.pixel[i] >= 0) store_row(t.out + i * c, c, a.out + t.pixel[i] * c);
  }
}

// --------------------------------------------------------------------------------------------- backward
template <typename In, typename T = Compute<In>>
void backward(const AttentionProblem& p, const BackwardArgs<In>& a, int64_t begin, int64_t end, void* scratch) {
  const Tiles<T> t = tiles_in<T>(p, true, scratch);
  const Layout lay = layout_of<T>(p);
  const int64_t n = lay.n, d = lay.d, c = lay.c, c3 = lay.c3, heads = p.heads;
  const int64_t total = p.batch * p.grid.windows_per_image;
  const T scale = static_cast<T>(p.scale);
  prepare_call(p, lay, a.bias, a.pad_qkv, t);
  for (int64_t chunk = begin; chunk < end; ++chunk) {
    T* grad_bias = a.grad_bias_partials + chunk * heads * n * n;
    T* grad_pad = a.grad_pad_partials + chunk * c3;
    for (int64_t e = 0; e < heads * n * n; ++e) grad_bias[e] = T(0);
    for (int64_t e = 0; e < c3; ++e) grad_pad[e] = T(0);
    const int64_t first = chunk * a.windows_per_chunk;
    const int64_t last = first + a.windows_per_chunk < total ? first + a.windows_per_chunk : total;
    for (int64_t bw = first; bw < last; ++bw) {
      const bool masked = load_window(p.grid, bw, t);
      stage_rows(t, n, a.qkv, c3, t.pad, t.qkv);
      stage_rows(t, n, a.grad_out, c, static_cast<const T*>(nullptr), t.dout);  // padding is cropped: dO = 0
      for (int64_t h = 0; h < heads; ++h) {
        const T* q = t.qkv + h * d;
        const T* k = t.qkv + c + h * d;
        const T* dout = t.dout + h * d;
        transpose_head(k, c3, n, d, t.kt, lay.ldn);
        transpose_head(t.qkv + 2 * c + h * d, c3, n, d, t.vt, lay.ldn);
        // P = exp(S - lse), recomputed
        gemm<T>(n, lay.ldn, d, q, c3, 1, t.kt, lay.ldn, t.s, lay.ldn);
        const T* table = t.bias_table + h * n * lay.ldn;
        const T* lse = a.lse + (bw * heads + h) * n;
        probabilities_tile(t.s, n, lay.ldn, scale, table, t.regions, masked, lse);
        // dV = P^T dO
        gemm<T>(n, lay.ldd, n, t.s, 1, lay.ldn, dout, c, t.product, lay.ldd);
        store_head(t.product, lay.ldd, n, d, static_cast<const T*>(nullptr), T(1), t.grad + 2 * c + h * d, c3);
        // dP = dO V^T, then dS = P (dP - D) in place with D_i = sum_j P_ij dP_ij (= dO_i . O_i); grad_bias += dS
        gemm<T>(n, lay.ldn, d, dout, c, 1, t.vt, lay.ldn, t.ds, lay.ldn);
        softmax_grad_tile(t.s, t.ds, n, lay.ldn, grad_bias + h * n * n);
        // dQ = dS K * scale, dK = dS^T Q * scale
        gemm<T>(n, lay.ldd, n, t.ds, lay.ldn, 1, k, c3, t.product, lay.ldd);
        store_head(t.product, lay.ldd, n, d, static_cast<const T*>(nullptr), scale, t.grad + h * d, c3);
        gemm<T>(n, lay.ldd, n, t.ds, 1, lay.ldn, q, c3, t.product, lay.ldd);
        store_head(t.product, lay.ldd, n, d, static_cast<const T*>(nullptr), scale, t.grad + c + h * d, c3);
      }
      for (int64_t i = 0; i < n; ++i) {
        const T* g = t.grad + i * c3;
        if (t.pixel[i] >= 0) {
          store_row(g, c3, a.grad_qkv + t.pixel[i] * c3);
        } else {  // a padded token's q/k/v is pad_qkv: its gradient adds up there
          for (int64_t e = 0; e < c3; ++e) grad_pad[e] += g[e];
        }
      }
    }
  }
}

}  // namespace
}  // namespace cpu
}  // namespace swin_kernels

#if SWIN_NATIVE_BF16
#include "native_bf16.h"
#define SWIN_FORWARD_BF16 forward_bf16
#else
#define SWIN_FORWARD_BF16 forward<BFloat16>
#endif

namespace swin_kernels {
namespace cpu {

// Constant-initialised data (no code runs), so naming the table is safe on any CPU.
extern const KernelTable SWIN_KERNEL_TABLE = {
    .isa = SWIN_ISA_NAME,
    .other_isa = SWIN_OTHER_ISA_NAME,
    .scratch_bytes = scratch_bytes,
    .prepare_scratch = prepare_scratch,
    .forward_f32 = forward<float>,
    .forward_f64 = forward<double>,
    .forward_bf16 = SWIN_FORWARD_BF16,
    .forward_f16 = forward<Half>,
    .backward_f32 = backward<float>,
    .backward_f64 = backward<double>,
    .backward_bf16 = backward<BFloat16>,
    .backward_f16 = backward<Half>,
};

}  // namespace cpu
}  // namespace swin_kernels
