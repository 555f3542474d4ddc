// The bfloat16 forward on AVX512-BF16 (vdpbf16ps: 16 lanes of acc += a[2i] b[2i] + a[2i+1] b[2i+1], products
// exact, sums in fp32), included by attention_kernels.h in the build that defines SWIN_NATIVE_BF16.
//
// Against the conversion path it keeps the window's stage in bfloat16 (a plain copy of the rows) and feeds both
// GEMMs bfloat16 pairs, so each instruction does two multiply-adds per lane:
//   S = q k^T   A = q rows as 32-bit pairs (broadcast), B = k^T of pairs: the transpose of k's 32-bit words
//   O = P v     A = P rounded to bfloat16 (as PyTorch's bf16 attention rounds it), B = v with row pairs interleaved
// The softmax, lse and 1/l are the float code of the other paths; O is rounded to bfloat16 once, on the way out.
// vdpbf16ps reads subnormal inputs as zero, and the roundings here flush subnormals to match (bf16 subnormals are
// below 1.2e-38: nothing attention computes). head_dim must be even (a pair never straddles two heads); the caller
// falls back to the conversion path if not. The backward always runs the conversion path.
#pragma once

#include <immintrin.h>

namespace swin_kernels {
namespace cpu {
namespace {

namespace native_bf16 {

// C[r, :] = sum_k2 A2(r, k2) . B2[k2, :] over pairs, for a tile of R rows and CV vectors of 16 columns.
template <int R, int CV>
inline __attribute__((always_inline)) void gemm_tile(int64_t depth2, const uint32_t* a, int64_t a_row,
                                                     const uint32_t* b, int64_t ldb, float* c, int64_t ldc) {
  __m512 acc[R][CV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < CV; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < depth2; ++k) {
    __m512bh bk[CV];
    for (int v = 0; v < CV; ++v) bk[v] = (__m512bh)_mm512_loadu_si512(b + k * ldb + v * 16);
    for (int r = 0; r < R; ++r) {
      const __m512bh x = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r * a_row + k]));
      for (int v = 0; v < CV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], x, bk[v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < CV; ++v) _mm512_storeu_ps(c + r * ldc + v * 16, acc[r][v]);
}

template <int R, int CV>
inline void gemm_tail(int64_t vectors, int64_t depth2, const uint32_t* a, int64_t a_row, const uint32_t* b,
                      int64_t ldb, float* c, int64_t ldc) {
  if constexpr (CV > 0) {
    if (vectors == CV)
      gemm_tile<R, CV>(depth2, a, a_row, b, ldb, c, ldc);
    else
      gemm_tail<R, CV - 1>(vectors, depth2, a, a_row, b, ldb, c, ldc);
  }
}

// C (rows x cols floats) = A2 (rows x depth2 pairs) B2 (depth2 x cols pairs) in tiles of R rows; cols a multiple
// of 16, A and C addressable up to the next multiple of R rows.
template <int R>
void gemm(int64_t rows, int64_t cols, int64_t depth2, const uint32_t* a, int64_t a_row, const uint32_t* b,
          int64_t ldb, float* c, int64_t ldc) {
  const int64_t vectors = cols / 16;
  for (int64_t r0 = 0; r0 < rows; r0 += R) {
    const uint32_t* ar = a + r0 * a_row;
    float* cr = c + r0 * ldc;
    int64_t v0 = 0;
    for (; v0 + kTileVectors <= vectors; v0 += kTileVectors)
      gemm_tile<R, kTileVectors>(depth2, ar, a_row, b + v0 * 16, ldb, cr + v0 * 16, ldc);
    if (v0 < vectors)
      gemm_tail<R, kTileVectors - 1>(vectors - v0, depth2, ar, a_row, b + v0 * 16, ldb, cr + v0 * 16, ldc);
  }
}

// Tiles of 7 rows where they pad n less than the float GEMM's 6 and fit the rows the tiles were sized for
// (Swin's 7 x 7 windows: 49 rows, no padding), else 6. 7 x 4 accumulators and 4 B vectors are one register more
// than AVX-512 has; on Swin's windows the tiles still measure ~5% faster than 6-row ones.
inline bool seven_row_tiles(const Layout& lay) {
  const int64_t seven = maps::round_up(lay.n, 7);
  return seven <= lay.rows && seven - lay.n < maps::round_up(lay.n, 6) - lay.n;
}

// dst[e] = src[e] rounded to bfloat16 by vcvtne2ps2bf16 / vcvtneps2bf16: to nearest even like store_row, but with
// subnormals flushed to zero, as this path's dot products read them anyway (a tail of < 16 goes through store_row).
inline void round_row(const float* src, int64_t count, BFloat16* dst) {
  int64_t e = 0;
  for (; e + 32 <= count; e += 32) {
    const __m512bh pair = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + e + 16), _mm512_loadu_ps(src + e));
    _mm512_storeu_si512(dst + e, (__m512i)pair);
  }
  for (; e + 16 <= count; e += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + e), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + e)));
  store_row(src + e, count - e, dst + e);
}

// out[pixel_i, :d] = product[i, :d] / l_i rounded to bfloat16 (round_row's rounding), padding tokens cropped:
// one head's slice of each row, written straight to the map (no output stage).
inline void store_rows(const Tiles<float>& t, int64_t n, int64_t d, const float* product, int64_t ldd, BFloat16* out,
                       int64_t c) {
  for (int64_t i = 0; i < n; ++i) {
    if (t.pixel[i] < 0) continue;
    const float* src = product + i * ldd;
    BFloat16* dst = out + t.pixel[i] * c;
    const __m512 inv = _mm512_set1_ps(t.row_values[i]);
    int64_t e = 0;
    for (; e + 16 <= d; e += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + e),
                          (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(src + e), inv)));
    for (; e < d; ++e) {
      const float x = src[e] * t.row_values[i];
      store_row(&x, 1, dst + e);
    }
  }
}

// stage[i, :] = src[pixel_i, :] as bfloat16 (width values), fill for padding tokens.
inline void stage_rows(const Tiles<float>& t, int64_t n, const BFloat16* src, int64_t width, const BFloat16* fill,
                       BFloat16* stage) {
  for (int64_t i = 0; i < n; ++i) {
    BFloat16* dst = stage + i * width;
    if (t.pixel[i] >= 0)
      __builtin_memcpy(dst, src + t.pixel[i] * width, width * sizeof(BFloat16));
    else if (fill)
      __builtin_memcpy(dst, fill, width * sizeof(BFloat16));
    else
      __builtin_memset(dst, 0, width * sizeof(BFloat16));
  }
}

// packed[j2, e] = (v[2 j2, e], v[2 j2 + 1, e]) for j2 < ceil(n/2), e < d: v's rows interleaved in pairs (the B
// operand of P v). The stage is zero past row n, and packed past column d stays as prepare_scratch left it: zero.
inline void pack_row_pairs(const BFloat16* v, int64_t stride, int64_t n, int64_t d, uint32_t* packed, int64_t ldd) {
  typedef uint16_t H16 __attribute__((vector_size(32)));
  typedef uint32_t U16 __attribute__((vector_size(64)));
  for (int64_t j2 = 0; j2 < (n + 1) / 2; ++j2) {
    const uint16_t* even = &v[2 * j2 * stride].bits;
    const uint16_t* odd = &v[(2 * j2 + 1) * stride].bits;
    uint32_t* dst = packed + j2 * ldd;
    int64_t e = 0;
    for (; e + 16 <= d; e += 16) {
      H16 lo, hi;
      __builtin_memcpy(&lo, even + e, sizeof(H16));
      __builtin_memcpy(&hi, odd + e, sizeof(H16));
      const U16 pair = __builtin_convertvector(lo, U16) | (__builtin_convertvector(hi, U16) << 16);
      __builtin_memcpy(dst + e, &pair, sizeof(U16));
    }
    for (; e < d; ++e) dst[e] = even[e] | (static_cast<uint32_t>(odd[e]) << 16);
  }
}

inline void forward(const AttentionProblem& p, const ForwardArgs<BFloat16>& a, int64_t begin, int64_t end,
                    void* scratch) {
  const Tiles<float> t = tiles_in<float>(p, false, scratch);
  const Layout lay = layout_of<float>(p);
  const int64_t n = lay.n, d = lay.d, c = lay.c, c3 = lay.c3, heads = p.heads, ldn = lay.ldn;
  const float scale = static_cast<float>(p.scale);
  prepare_call(p, lay, a.bias, a.pad_qkv, t);
  BFloat16* stage = reinterpret_cast<BFloat16*>(t.qkv);  // rows x 3C bfloat16, in the float stage's memory
  BFloat16* p16 = reinterpret_cast<BFloat16*>(t.p16);    // rows x ldn
  uint32_t* kt = reinterpret_cast<uint32_t*>(t.kt);      // d/2 x ldn pairs
  uint32_t* packed_v = reinterpret_cast<uint32_t*>(t.packed_v);
  const auto matmul = seven_row_tiles(lay) ? gemm<7> : gemm<6>;
  for (int64_t bw = begin; bw < end; ++bw) {
    const bool masked = load_window(p.grid, bw, t);
    stage_rows(t, n, a.qkv, c3, a.pad_qkv, stage);
    for (int64_t h = 0; h < heads; ++h) {
      const uint32_t* q = reinterpret_cast<const uint32_t*>(stage + h * d);
      // k^T of pairs: the 32-bit words of k's rows transposed (ldn rows read: zero past n)
      transpose_head(reinterpret_cast<const float*>(stage + c + h * d), c3 / 2, n, d / 2,
                     reinterpret_cast<float*>(kt), ldn);
      matmul(n, ldn, d / 2, q, c3 / 2, kt, ldn, t.s, ldn);  // S = q k^T
      softmax_tile(t.s, n, ldn, scale, t.bias_table + h * n * ldn, t.regions, masked, t.row_max, t.row_sum);
      finish_rows(t.row_max, t.row_sum, n, a.lse + (bw * heads + h) * n, t.row_values);
      round_row(t.s, n * ldn, p16);  // P, rows contiguous
      pack_row_pairs(stage + 2 * c + h * d, c3, n, d, packed_v, lay.ldd);
      matmul(n, lay.ldd, (n + 1) / 2, reinterpret_cast<const uint32_t*>(p16), ldn / 2, packed_v, lay.ldd,
             t.product, lay.ldd);  // P v
      store_rows(t, n, d, t.product, lay.ldd, a.out + h * d, c);
    }
  }
}

}  // namespace native_bf16

// The table's bfloat16 forward: native where the head dimension pairs up, the conversion path otherwise.
void forward_bf16(const AttentionProblem& p, const ForwardArgs<BFloat16>& a, int64_t begin, int64_t end,
                  void* scratch) {
  if (p.head_dim % 2 == 0)
    native_bf16::forward(p, a, begin, end, scratch);
  else
    forward<BFloat16>(p, a, begin, end, scratch);
}

}  // namespace
}  // namespace cpu
}  // namespace swin_kernels
