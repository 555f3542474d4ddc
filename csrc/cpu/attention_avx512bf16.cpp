// The attention kernels built for AVX-512 with the BF16 extension (vdpbf16ps), used when the CPU has it:
// bfloat16 attention multiplies bfloat16 pairs straight from the stage (attention_kernels.h, SWIN_NATIVE_BF16);
// every other type runs the same code as the AVX-512 build.
#include <stdint.h>

#include "kernel_api.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,avx2,fma"))), \
                             apply_to = function)
#else
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16,avx2,fma")
#endif
#define SWIN_VECTOR_BYTES 64
#define SWIN_HALF_F16C 512
#define SWIN_NATIVE_BF16 1
#else
#define SWIN_VECTOR_BYTES 16  // not x86: never selected, built portably
#define SWIN_HALF_F16C 0
#define SWIN_NATIVE_BF16 0
#endif
#define SWIN_TILE_ROWS 6
#define SWIN_TILE_VECTORS 4
#define SWIN_ISA_NAME "avx512bf16"
#define SWIN_OTHER_ISA_NAME "avx512"
#define SWIN_KERNEL_TABLE kAvx512Bf16Kernels
#include "attention_kernels.h"

#if defined(__x86_64__) && defined(__clang__)
#pragma clang attribute pop
#endif
