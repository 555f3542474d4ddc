// The attention kernels built for AVX-512 (16 floats per register), used when the CPU has it.
#include <stdint.h>

#include "kernel_api.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma"))), apply_to = function)
#else
#pragma GCC target("avx512f,avx512vl,avx512dq,avx2,fma")
#endif
#define SWIN_VECTOR_BYTES 64
#define SWIN_HALF_F16C 512
#else
#define SWIN_VECTOR_BYTES 16  // not x86: never selected, built portably
#define SWIN_HALF_F16C 0
#endif
#define SWIN_TILE_ROWS 6
#define SWIN_TILE_VECTORS 4
#define SWIN_ISA_NAME "avx512"
#define SWIN_OTHER_ISA_NAME SWIN_ISA_NAME
#define SWIN_KERNEL_TABLE kAvx512Kernels
#include "attention_kernels.h"

#if defined(__x86_64__) && defined(__clang__)
#pragma clang attribute pop
#endif
