// Interface between the torch-facing CPU ops (ops_cpu.cpp) and the attention kernels, which are compiled once
// per instruction set (attention_avx512bf16.cpp, attention_avx512.cpp, attention_avx2.cpp, attention_generic.cpp)
// from the same template (attention_kernels.h). Plain pointers and sizes only: the kernel translation units
// include no torch header.
#pragma once

#include <stdint.h>

#include "../index_maps.h"

namespace swin_kernels {
namespace cpu {

// 16-bit storage types, bit for bit torch's bfloat16 and float16. The kernels convert them to float as they
// stage a window's rows and round results back (to nearest even) as they store them: all arithmetic is fp32.
struct BFloat16 {
  uint16_t bits;
};
struct Half {
  uint16_t bits;
};

// The type a storage type computes (and keeps lse and partial sums) in.
template <typename T>
struct ComputeOf {
  typedef T type;
};
template <>
struct ComputeOf<BFloat16> {
  typedef float type;
};
template <>
struct ComputeOf<Half> {
  typedef float type;
};
template <typename T>
using Compute = typename ComputeOf<T>::type;

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
  Compute<T>* lse;   // (B*nW, heads, N) row log-sum-exp of the scores
};

template <typename T>
struct BackwardArgs {
  const T* grad_out;  // (B, H, W, C)
  const T* qkv;
  const T* pad_qkv;
  const T* bias;
  const Compute<T>* lse;
  T* grad_qkv;                     // (B, H, W, 3C), every element written
  Compute<T>* grad_pad_partials;   // (chunks, 3C): chunk c's sum over its padded tokens
  Compute<T>* grad_bias_partials;  // (chunks, heads, N, N): chunk c's sum over its windows
  int64_t windows_per_chunk;
};

template <typename T>
using ForwardFn = void (*)(const AttentionProblem&, const ForwardArgs<T>&, int64_t begin, int64_t end, void* scratch);
template <typename T>
using BackwardFn = void (*)(const AttentionProblem&, const BackwardArgs<T>&, int64_t begin, int64_t end,
                            void* scratch);

// Forward: runs windows [begin, end) of the batch (window b*nW + w), all heads.
// Backward: runs chunks [begin, end) of windows_per_chunk consecutive windows (all heads); each chunk writes
// its own partial sums, so the reduction order never depends on the thread count.
// scratch: scratch_bytes(...) bytes owned by the calling thread, set up once by prepare_scratch(...) and then
// reused by any number of forward/backward calls of the same problem (is_double: fp64, else fp32 arithmetic).
struct KernelTable {
  const char* isa;        // the build's name, as SWIN_KERNELS_CPU_ISA selects it (what bfloat16 attention runs)
  const char* other_isa;  // the build whose code every other type runs (the same, but for avx512bf16: avx512)
  int64_t (*scratch_bytes)(const AttentionProblem&, bool backward, bool is_double);
  void (*prepare_scratch)(const AttentionProblem&, bool backward, bool is_double, void* scratch);
  ForwardFn<float> forward_f32;
  ForwardFn<double> forward_f64;
  ForwardFn<BFloat16> forward_bf16;
  ForwardFn<Half> forward_f16;
  BackwardFn<float> backward_f32;
  BackwardFn<double> backward_f64;
  BackwardFn<BFloat16> backward_bf16;
  BackwardFn<Half> backward_f16;
};

// The entry points of one storage type.
inline ForwardFn<float> forward_of(const KernelTable& k, const float*) { return k.forward_f32; }
inline ForwardFn<double> forward_of(const KernelTable& k, const double*) { return k.forward_f64; }
inline ForwardFn<BFloat16> forward_of(const KernelTable& k, const BFloat16*) { return k.forward_bf16; }
inline ForwardFn<Half> forward_of(const KernelTable& k, const Half*) { return k.forward_f16; }
inline BackwardFn<float> backward_of(const KernelTable& k, const float*) { return k.backward_f32; }
inline BackwardFn<double> backward_of(const KernelTable& k, const double*) { return k.backward_f64; }
inline BackwardFn<BFloat16> backward_of(const KernelTable& k, const BFloat16*) { return k.backward_bf16; }
inline BackwardFn<Half> backward_of(const KernelTable& k, const Half*) { return k.backward_f16; }

// One table per instruction set; call through one only when the CPU supports it (see ops_cpu.cpp).
extern const KernelTable kAvx512Bf16Kernels;
extern const KernelTable kAvx512Kernels;
extern const KernelTable kAvx2Kernels;
extern const KernelTable kGenericKernels;

}  // namespace cpu
}  // namespace swin_kernels
