// The attention kernels for any CPU: 16-byte vectors (SSE2 on x86-64, NEON on arm64), the compiler's baseline.
#include <stdint.h>

#include "kernel_api.h"

#define SWIN_VECTOR_BYTES 16
#define SWIN_TILE_ROWS 4
#define SWIN_TILE_VECTORS 2
#define SWIN_HALF_F16C 0
#define SWIN_ISA_NAME "generic"
#define SWIN_OTHER_ISA_NAME SWIN_ISA_NAME
#define SWIN_KERNEL_TABLE kGenericKernels
#include "attention_kernels.h"
