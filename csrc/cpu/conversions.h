// Rows of bfloat16 / float16 to float and back, for the attention kernels (included by attention_kernels.h,
// so compiled once per instruction set with its SWIN_VECTOR_BYTES and SWIN_HALF_F16C).
//
// bfloat16 -> float is exact (a shift); float -> bfloat16 rounds to nearest even and turns NaN into 0x7fc0, as
// torch does. float16 uses the hardware conversions where the build has them (both round to nearest even) and
// otherwise the FP16 library's bit-exact method, written once for scalars and SIMD vectors alike.
#pragma once

#include <stdint.h>

#include "kernel_api.h"

#if SWIN_HALF_F16C
#include <immintrin.h>
#endif

namespace swin_kernels {
namespace cpu {
namespace {

namespace convert {

constexpr int kLanes = SWIN_VECTOR_BYTES / 4;
typedef float F __attribute__((vector_size(SWIN_VECTOR_BYTES)));
typedef uint32_t U __attribute__((vector_size(SWIN_VECTOR_BYTES)));
typedef uint16_t H __attribute__((vector_size(SWIN_VECTOR_BYTES / 2)));  // kLanes 16-bit values

template <typename To, typename From>
inline To bits_as(From x) {
  static_assert(sizeof(To) == sizeof(From), "bit casts keep the size");
  To y;
  __builtin_memcpy(&y, &x, sizeof(To));
  return y;
}

// Scalars (float, uint32_t) or vectors (F, U): the same expressions serve both.
template <typename Fl, typename Ui>
inline Fl bf16_to_float(Ui h) {
  return bits_as<Fl>(h << 16);
}
template <typename Fl, typename Ui>
inline Ui float_to_bf16(Fl x) {
  const Ui b = bits_as<Ui>(x);
  const Ui rounded = (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
  return x != x ? Ui{} + 0x7fc0u : rounded;
}

// float16 bits (low half of h) -> float: normals rescaled by 2^-112 after moving the exponent field; subnormals
// through a magic-number subtraction; inf and NaN come out of the normal path.
template <typename Fl, typename Ui>
inline Fl half_to_float(Ui h) {
  const Ui w = h << 16;
  const Ui sign = w & 0x80000000u;
  const Ui two_w = w + w;
  const Fl normalized = bits_as<Fl>((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const Fl denormalized = bits_as<Fl>((two_w >> 17) | (126u << 23)) - 0.5f;
  return bits_as<Fl>(sign | (two_w < (1u << 27) ? bits_as<Ui>(denormalized) : bits_as<Ui>(normalized)));
}

// float -> float16 bits, rounded to nearest even by one float addition that aligns the mantissa; overflow gives
// inf, NaN gives 0x7e00 (with the sign).
template <typename Fl, typename Ui>
inline Ui float_to_half(Fl x) {
  const Ui w = bits_as<Ui>(x);
  Fl base = (bits_as<Fl>(w & 0x7fffffffu) * 0x1.0p+112f) * 0x1.0p-110f;
  const Ui shl1_w = w + w;
  const Ui sign = w & 0x80000000u;
  Ui bias = shl1_w & 0xff000000u;
  bias = bias < 0x71000000u ? Ui{} + 0x71000000u : bias;
  base = bits_as<Fl>((bias >> 1) + 0x07800000u) + base;
  const Ui bits = bits_as<Ui>(base);
  const Ui nonsign = ((bits >> 13) & 0x00007c00u) + (bits & 0x00000fffu);
  return (sign >> 16) | (shl1_w > 0xff000000u ? Ui{} + 0x7e00u : nonsign);
}

inline F half_vector_to_float(const uint16_t* src) {
#if SWIN_HALF_F16C == 512
  return bits_as<F>(_mm512_maskz_cvtph_ps(0xffff, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))));
#elif SWIN_HALF_F16C == 256
  return bits_as<F>(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src))));
#else
  H h;
  __builtin_memcpy(&h, src, sizeof(H));
  return half_to_float<F, U>(__builtin_convertvector(h, U));
#endif
}

inline void float_vector_to_half(F x, uint16_t* dst) {
#if SWIN_HALF_F16C == 512
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst),
                      _mm512_maskz_cvtps_ph(0xffff, bits_as<__m512>(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif SWIN_HALF_F16C == 256
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst),
                   _mm256_cvtps_ph(bits_as<__m256>(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#else
  const H h = __builtin_convertvector(float_to_half<F, U>(x), H);
  __builtin_memcpy(dst, &h, sizeof(H));
#endif
}

}  // namespace convert

// One value of a storage type in its compute type, and back.
inline float to_compute(float x) { return x; }
inline double to_compute(double x) { return x; }
inline float to_compute(BFloat16 x) { return convert::bf16_to_float<float, uint32_t>(x.bits); }
inline float to_compute(Half x) { return convert::half_to_float<float, uint32_t>(x.bits); }

// dst[e] = src[e] converted, e < count.
template <typename T>
inline void load_row(const T* src, int64_t count, Compute<T>* dst) {
  __builtin_memcpy(dst, src, count * sizeof(T));
}
inline void load_row(const BFloat16* src, int64_t count, float* dst) {
  using namespace convert;
  int64_t e = 0;
  for (; e + kLanes <= count; e += kLanes) {
    H h;
    __builtin_memcpy(&h, src + e, sizeof(H));
    const F x = bf16_to_float<F, U>(__builtin_convertvector(h, U));
    __builtin_memcpy(dst + e, &x, sizeof(F));
  }
  for (; e < count; ++e) dst[e] = to_compute(src[e]);
}
inline void load_row(const Half* src, int64_t count, float* dst) {
  using namespace convert;
  int64_t e = 0;
  for (; e + kLanes <= count; e += kLanes) {
    const F x = half_vector_to_float(&src[e].bits);
    __builtin_memcpy(dst + e, &x, sizeof(F));
  }
  for (; e < count; ++e) dst[e] = to_compute(src[e]);
}

// dst[e] = src[e] rounded to the storage type, e < count.
template <typename T>
inline void store_row(const Compute<T>* src, int64_t count, T* dst) {
  __builtin_memcpy(dst, src, count * sizeof(T));
}
inline void store_row(const float* src, int64_t count, BFloat16* dst) {
  using namespace convert;
  int64_t e = 0;
  for (; e + kLanes <= count; e += kLanes) {
    F x;
    __builtin_memcpy(&x, src + e, sizeof(F));
    const H h = __builtin_convertvector(float_to_bf16<F, U>(x), H);
    __builtin_memcpy(dst + e, &h, sizeof(H));
  }
  for (; e < count; ++e) dst[e].bits = static_cast<uint16_t>(float_to_bf16<float, uint32_t>(src[e]));
}
inline void store_row(const float* src, int64_t count, Half* dst) {
  using namespace convert;
  int64_t e = 0;
  for (; e + kLanes <= count; e += kLanes) {
    F x;
    __builtin_memcpy(&x, src + e, sizeof(F));
    float_vector_to_half(x, &dst[e].bits);
  }
  for (; e < count; ++e) dst[e].bits = static_cast<uint16_t>(float_to_half<float, uint32_t>(src[e]));
}

}  // namespace
}  // namespace cpu
}  // namespace swin_kernels
