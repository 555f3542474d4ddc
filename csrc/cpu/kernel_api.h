// Interface between the torch-facing CPU ops (ops_cpu.cpp) and the attention kernels, which are compiled once
// per instruction set (attention_avx512.cpp, attention_avx2.cpp, attention_generic.cpp) from the same template
// (attention_kernels.h). Plain pointers and sizes only: the kernel translation units include no torch header.
#pragma once

#include <stdint.h>

#include "../index_maps.h"

namespace swin_kernels {
namespace cpu {

struct AttentionProblem {
  int64_t batch;
  int32_t heads, head_dim;
  double scale;
  maps::WindowGrid grid;
};

template <typename T>
struct ForwardArgs {
  const T* qkv;      // (B, H, W, 3C)
  const T* pad_qkv;  // (3C,) q/k/v of padded tokens, or null for zeros
  const T* bias;     // (heads, N, N) or null
  T* out;            // (B, H, W, C)
  T* lse;            // (B*nW, heads, N) row log-sum-exp of the scores
};

template <typename T>
struct BackwardArgs {
  const T* grad_out;  // (B, H, W, C)
  const T* qkv;
  const T* pad_qkv;
  const T* bias;
  const T* lse;
  T* grad_qkv;            // (B, H, W, 3C), every element written
  T* grad_pad_partials;   // (chunks, 3C): chunk c's sum over its padded tokens
  T* grad_bias_partials;  // (chunks, heads, N, N): chunk c's sum over its windows
  int64_t windows_per_chunk;
};

// Forward: runs windows [begin, end) of the batch (window b*nW + w), all heads.
// Backward: runs chunks [begin, end) of windows_per_chunk consecutive windows (all heads); each chunk writes
// its own partial sums, so the reduction order never depends on the thread count.
// scratch: scratch_bytes(...) bytes owned by the calling thread, set up once by prepare_scratch(...) and then
// reused by any number of forward/backward calls of the same problem.
struct KernelTable {
  const char* isa;
  int64_t (*scratch_bytes)(const AttentionProblem&, bool backward, bool is_double);
  void (*prepare_scratch)(const AttentionProblem&, bool backward, bool is_double, void* scratch);
  void (*forward_f32)(const AttentionProblem&, const ForwardArgs<float>&, int64_t begin, int64_t end, void* scratch);
  void (*forward_f64)(const AttentionProblem&, const ForwardArgs<double>&, int64_t begin, int64_t end, void* scratch);
  void (*backward_f32)(const AttentionProblem&, const BackwardArgs<float>&, int64_t begin, int64_t end,
                       void* scratch);
  void (*backward_f64)(const AttentionProblem&, const BackwardArgs<double>&, int64_t begin, int64_t end,
                       void* scratch);
};

// One table per instruction set; call through one only when the CPU supports it (see ops_cpu.cpp).
extern const KernelTable kAvx512Kernels;
extern const KernelTable kAvx2Kernels;
extern const KernelTable kGenericKernels;

}  // namespace cpu
}  // namespace swin_kernels
