// The attention kernels built for AVX2 + FMA + F16C (8 floats per register), used when the CPU lacks AVX-512.
#include <stdint.h>

#include "kernel_api.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC target("avx2,fma,f16c")
#endif
#define SWIN_VECTOR_BYTES 32
#define SWIN_HALF_F16C 256
#else
#define SWIN_VECTOR_BYTES 16  // not x86: never selected, built portably
#define SWIN_HALF_F16C 0
#endif
#define SWIN_TILE_ROWS 6
#define SWIN_TILE_VECTORS 2
#define SWIN_ISA_NAME "avx2"
#define SWIN_OTHER_ISA_NAME SWIN_ISA_NAME
#define SWIN_KERNEL_TABLE kAvx2Kernels
#include "attention_kernels.h"

#if defined(__x86_64__) && defined(__clang__)
#pragma clang attribute pop
#endif
