// CPU implementations of the swin_kernels ops: argument checks, output allocation, threading
// (at::parallel_for) and the choice of the instruction-set build of the attention kernels.
//
// Attention takes float32, float64, bfloat16 and float16; the half types compute in float32 and keep lse and
// the backward's partial sums in float32 (their gradients are rounded to the input type once, at the end).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>

#include "../op_checks.h"
#include "kernel_api.h"

namespace swin_kernels {
namespace cpu {
namespace {

// Backward partial sums: the windows are cut into at most this many chunks of equal size, a number that depends
// on the problem only, so grad_bias / grad_pad_qkv are bit-identical whatever the thread count.
constexpr int64_t kMaxBackwardChunks = 128;

bool cpu_has(const char* feature_set) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512dq");
  if (std::strcmp(feature_set, "avx512bf16") == 0)
    return avx512 && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16");
  if (std::strcmp(feature_set, "avx512") == 0) return avx512;
  if (std::strcmp(feature_set, "avx2") == 0) return avx2;
#endif
  return std::strcmp(feature_set, "generic") == 0;
}

// The builds, widest first.
constexpr const KernelTable* kBuilds[] = {&kAvx512Bf16Kernels, &kAvx512Kernels, &kAvx2Kernels, &kGenericKernels};

// The widest build this CPU runs; SWIN_KERNELS_CPU_ISA=generic|avx2|avx512|avx512bf16 picks another (tests do).
const KernelTable& kernels() {
  const char* requested = std::getenv("SWIN_KERNELS_CPU_ISA");
  if (requested != nullptr && *requested != '\0') {
    TORCH_CHECK(cpu_has(requested), "swin_kernels: SWIN_KERNELS_CPU_ISA=", requested,
                " is not one of generic, avx2, avx512, avx512bf16 that this CPU supports");
    for (const KernelTable* k : kBuilds)
      if (std::strcmp(requested, k->isa) == 0) return *k;
  }
  static const KernelTable* const best = [] {
    for (const KernelTable* k : kBuilds)
      if (cpu_has(k->isa)) return k;
    return &kGenericKernels;
  }();
  return *best;
}

// The build whose code runs attention of this dtype here (after SWIN_KERNELS_CPU_ISA).
std::string cpu_kernel_isa(at::ScalarType dtype) {
  const KernelTable& k = kernels();
  return dtype == at::kBFloat16 ? k.isa : k.other_isa;
}

void check_cpu_attention_dtype(const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu(), "swin_kernels: the CPU kernels need CPU tensors, got ", t.device());
  const at::ScalarType s = t.scalar_type();
  TORCH_CHECK(s == at::kFloat || s == at::kDouble || s == at::kBFloat16 || s == at::kHalf,
              "swin_kernels: the CPU attention kernels support float32, float64, bfloat16 and float16, got ", s);
}

// torch's element types -> the kernels' (bit-identical) storage types.
template <typename S>
struct KernelTypeOf {
  typedef S type;
};
template <>
struct KernelTypeOf<at::BFloat16> {
  typedef BFloat16 type;
};
template <>
struct KernelTypeOf<at::Half> {
  typedef Half type;
};
template <typename S>
using KernelType = typename KernelTypeOf<S>::type;
static_assert(sizeof(at::BFloat16) == sizeof(BFloat16) && sizeof(at::Half) == sizeof(Half), "16-bit storage");

template <typename S>
const KernelType<S>* kernel_data(const at::Tensor& t) {
  return reinterpret_cast<const KernelType<S>*>(t.data_ptr<S>());
}
template <typename S>
KernelType<S>* kernel_data(at::Tensor& t) {
  return reinterpret_cast<KernelType<S>*>(t.data_ptr<S>());
}
template <typename S>
const KernelType<S>* kernel_data_or_null(const std::optional<at::Tensor>& t) {
  return t.has_value() ? kernel_data<S>(*t) : nullptr;
}

// The dtype of lse and of the backward's partial sums.
at::ScalarType compute_dtype(at::ScalarType s) {
  return s == at::kBFloat16 || s == at::kHalf ? at::kFloat : s;
}

AttentionProblem problem_of(const AttentionSizes& s, double scale) {
  AttentionProblem p;
  p.batch = s.batch;
  p.heads = static_cast<int32_t>(s.heads);
  p.head_dim = static_cast<int32_t>(s.head_dim);
  p.scale = scale;
  p.grid = s.grid;
  return p;
}

// Runs fn(begin, end, scratch) over [0, count) on the intra-op threads, each with its own scratch. The range is
// handed out in pieces from a shared counter, so a thread that gets descheduled (a busy machine) just takes fewer
// pieces instead of holding up the others. Which thread runs a piece never changes the piece's result.
template <typename Fn>
void parallel_pieces(const AttentionProblem& p, const KernelTable& k, bool backward, bool is_double, int64_t count,
                     const Fn& fn) {
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), count));
  const int64_t piece = std::max<int64_t>(1, count / (threads * 8));
  const int64_t bytes = k.scratch_bytes(p, backward, is_double);
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    std::unique_ptr<char[]> scratch(new char[bytes]);
    k.prepare_scratch(p, backward, is_double, scratch.get());
    for (int64_t begin = next.fetch_add(piece); begin < count; begin = next.fetch_add(piece))
      fn(begin, std::min(begin + piece, count), scratch.get());
  });
}

template <typename T>
void attention_forward(const AttentionProblem& p, const KernelTable& k, const ForwardArgs<T>& args, int64_t windows) {
  const ForwardFn<T> forward = forward_of(k, args.qkv);
  parallel_pieces(p, k, false, std::is_same_v<T, double>, windows,
                  [&](int64_t begin, int64_t end, void* scratch) { forward(p, args, begin, end, scratch); });
}

std::tuple<at::Tensor, at::Tensor> window_attention_fwd(const at::Tensor& qkv, const std::optional<at::Tensor>& pad_qkv,
                                                        const std::optional<at::Tensor>& bias, int64_t num_heads,
                                                        at::IntArrayRef window, at::IntArrayRef shift,
                                                        bool roll_before_pad, double scale) {
  check_cpu_attention_dtype(qkv);
  const AttentionSizes s = check_attention_args(qkv, pad_qkv, bias, num_heads, window, shift, roll_before_pad);
  const AttentionProblem p = problem_of(s, scale);
  const int64_t windows = s.batch * s.grid.windows_per_image;
  at::Tensor out = new_output(s.out_shape, qkv.options());
  at::Tensor lse =
      new_output({windows, s.heads, s.grid.tokens}, qkv.options().dtype(compute_dtype(qkv.scalar_type())));
  const KernelTable& k = kernels();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, qkv.scalar_type(), "window_attention_fwd", [&] {
    using Acc = Compute<KernelType<scalar_t>>;
    const ForwardArgs<KernelType<scalar_t>> args{.qkv = kernel_data<scalar_t>(qkv),
                                                 .pad_qkv = kernel_data_or_null<scalar_t>(pad_qkv),
                                                 .bias = kernel_data_or_null<scalar_t>(bias),
                                                 .out = kernel_data<scalar_t>(out),
                                                 .lse = lse.data_ptr<Acc>()};
    attention_forward(p, k, args, windows);
  });
  return {out, lse};
}

// out[e] = sum over chunks c, in order, of partials[c, e] (in Acc), rounded once to S.
template <typename Acc, typename S>
void reduce_chunks(const at::Tensor& partials, at::Tensor& out) {
  const int64_t chunks = partials.size(0), size = out.numel();
  const Acc* src = partials.data_ptr<Acc>();
  S* dst = out.data_ptr<S>();
  at::parallel_for(0, size, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t e = begin; e < end; ++e) {
      Acc total = src[e];
      for (int64_t c = 1; c < chunks; ++c) total += src[c * size + e];
      dst[e] = static_cast<S>(total);  // round to nearest even for the half types
    }
  });
}

template <typename S>
void attention_backward(const AttentionProblem& p, const KernelTable& k, BackwardArgs<KernelType<S>> args,
                        int64_t chunks, at::Tensor& pad_partials, at::Tensor& bias_partials, at::Tensor& grad_pad,
                        at::Tensor& grad_bias) {
  using T = KernelType<S>;
  using Acc = Compute<T>;
  args.grad_pad_partials = pad_partials.data_ptr<Acc>();
  args.grad_bias_partials = bias_partials.data_ptr<Acc>();
  const BackwardFn<T> backward = backward_of(k, args.qkv);
  parallel_pieces(p, k, true, std::is_same_v<T, double>, chunks,
                  [&](int64_t begin, int64_t end, void* scratch) { backward(p, args, begin, end, scratch); });
  reduce_chunks<Acc, S>(pad_partials, grad_pad);
  reduce_chunks<Acc, S>(bias_partials, grad_bias);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> window_attention_bwd(
    const at::Tensor& grad_out, const at::Tensor& qkv, const std::optional<at::Tensor>& pad_qkv,
    const std::optional<at::Tensor>& bias, const at::Tensor& lse, int64_t num_heads,
    at::IntArrayRef window, at::IntArrayRef shift, bool roll_before_pad, double scale) {
  check_cpu_attention_dtype(qkv);
  const AttentionSizes s = check_attention_args(qkv, pad_qkv, bias, num_heads, window, shift, roll_before_pad);
  const at::ScalarType acc_dtype = compute_dtype(qkv.scalar_type());
  check_attention_backward_args(s, qkv, grad_out, lse, acc_dtype);
  const AttentionProblem p = problem_of(s, scale);
  const int64_t n = s.grid.tokens, windows = s.batch * s.grid.windows_per_image;
  const int64_t per_chunk = (windows + kMaxBackwardChunks - 1) / kMaxBackwardChunks;
  const int64_t chunks = (windows + per_chunk - 1) / per_chunk;
  at::Tensor grad_qkv = new_output(qkv.sizes(), qkv.options());
  at::Tensor grad_pad = new_output({3 * s.channels}, qkv.options());
  at::Tensor grad_bias = new_output({s.heads, n, n}, qkv.options());
  at::Tensor pad_partials = at::empty({chunks, 3 * s.channels}, qkv.options().dtype(acc_dtype));
  at::Tensor bias_partials = at::empty({chunks, s.heads, n, n}, qkv.options().dtype(acc_dtype));
  const KernelTable& k = kernels();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, qkv.scalar_type(), "window_attention_bwd", [&] {
    using Acc = Compute<KernelType<scalar_t>>;
    const BackwardArgs<KernelType<scalar_t>> args{.grad_out = kernel_data<scalar_t>(grad_out),
                                                  .qkv = kernel_data<scalar_t>(qkv),
                                                  .pad_qkv = kernel_data_or_null<scalar_t>(pad_qkv),
                                                  .bias = kernel_data_or_null<scalar_t>(bias),
                                                  .lse = lse.data_ptr<Acc>(),
                                                  .grad_qkv = kernel_data<scalar_t>(grad_qkv),
                                                  .grad_pad_partials = nullptr,  // set by attention_backward
                                                  .grad_bias_partials = nullptr,
                                                  .windows_per_chunk = per_chunk};
    attention_backward<scalar_t>(p, k, args, chunks, pad_partials, bias_partials, grad_pad, grad_bias);
  });
  return {grad_qkv, grad_pad, grad_bias};
}

// ------------------------------------------------------------------------------------ partition / reverse
// Pure data movement, any dtype: rows of C elements copied through maps::token_pixel.
int64_t rows_per_task(int64_t row_bytes) { return row_bytes >= 16384 ? 1 : 16384 / row_bytes; }

// One pass over the window_rows rows of the (B*nW, N, C) windows tensor. Partition (kReverse = false) gathers each
// row from its pixel of the (B, H, W, C) map, or zeros for padding; reverse scatters real tokens' rows back to their
// pixels: every pixel is held by exactly one token, so each map row is written once and padding rows are dropped.
template <bool kReverse>
void move_rows(const at::Tensor& src_tensor, at::Tensor& dst_tensor, const maps::WindowGrid& g, int64_t window_rows,
               int64_t row_bytes) {
  const int64_t n = g.tokens, image = g.pixels;
  const char* src = static_cast<const char*>(src_tensor.data_ptr());
  char* dst = static_cast<char*>(dst_tensor.data_ptr());
  at::parallel_for(0, window_rows, rows_per_task(row_bytes), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t bw = row / n, b = bw / g.windows_per_image;
      const int64_t pixel = maps::token_pixel(g, bw % g.windows_per_image, static_cast<int32_t>(row % n));
      const int64_t map_row = b * image + pixel;
      if (kReverse) {
        if (pixel >= 0) std::memcpy(dst + map_row * row_bytes, src + row * row_bytes, row_bytes);
      } else if (pixel >= 0) {
        std::memcpy(dst + row * row_bytes, src + map_row * row_bytes, row_bytes);
      } else {
        std::memset(dst + row * row_bytes, 0, row_bytes);  // zero padding
      }
    }
  });
}

at::Tensor window_partition(const at::Tensor& x, at::IntArrayRef window, at::IntArrayRef shift, bool roll_before_pad) {
  TORCH_CHECK(x.device().is_cpu(), "swin_kernels: the CPU kernels need CPU tensors, got ", x.device());
  const maps::WindowGrid g = check_partition_args(x, window, shift, roll_before_pad);
  const int64_t batch = x.size(0), channels = x.size(-1);
  at::Tensor out = new_output({batch * g.windows_per_image, g.tokens, channels}, x.options());
  move_rows<false>(x, out, g, out.size(0) * g.tokens, channels * static_cast<int64_t>(x.element_size()));
  return out;
}

at::Tensor window_reverse(const at::Tensor& windows, at::IntArrayRef window, at::IntArrayRef sizes,
                          at::IntArrayRef shift, bool roll_before_pad) {
  TORCH_CHECK(windows.device().is_cpu(), "swin_kernels: the CPU kernels need CPU tensors, got ", windows.device());
  const maps::WindowGrid g = check_reverse_args(windows, window, sizes, shift, roll_before_pad);
  const int64_t batch = windows.size(0) / g.windows_per_image, channels = windows.size(2);
  at::DimVector shape{batch};
  shape.append(sizes.begin(), sizes.end());
  shape.push_back(channels);
  at::Tensor out = new_output(shape, windows.options());
  move_rows<true>(windows, out, g, windows.size(0) * g.tokens, channels * static_cast<int64_t>(windows.element_size()));
  return out;
}

}  // namespace
}  // namespace cpu
}  // namespace swin_kernels

// Which build of the kernels runs CPU attention of a dtype: "avx512bf16", "avx512", "avx2" or "generic".
TORCH_LIBRARY_FRAGMENT(swin_kernels, m) {
  m.def("cpu_kernel_isa(ScalarType dtype) -> str", &swin_kernels::cpu::cpu_kernel_isa);
}

TORCH_LIBRARY_IMPL(swin_kernels, CPU, m) {
  m.impl("window_attention_fwd", &swin_kernels::cpu::window_attention_fwd);
  m.impl("window_attention_bwd", &swin_kernels::cpu::window_attention_bwd);
  m.impl("window_partition", &swin_kernels::cpu::window_partition);
  m.impl("window_reverse", &swin_kernels::cpu::window_reverse);
}
