// CUDA implementations of the swin_kernels ops: checks, output allocation, the current stream and the device
// guard; the kernels themselves are in the .cu files, behind launch_api.h.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "../op_checks.h"
#include "launch_api.h"

namespace swin_kernels {
namespace cuda {
namespace {

DType dtype_of(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kHalf:
      return DType::kFloat16;
    case at::kBFloat16:
      return DType::kBFloat16;
    default:
      TORCH_CHECK(false, "swin_kernels: the CUDA attention kernels support float32, float16 and bfloat16, got ",
                  t.scalar_type());
  }
}

void check_cuda_attention(const at::Tensor& qkv, const AttentionSizes& s) {
  TORCH_CHECK(qkv.is_cuda(), "swin_kernels: the CUDA kernels need CUDA tensors, got ", qkv.device());
  TORCH_CHECK(attention_supported(s.grid.tokens, s.head_dim),
              "swin_kernels: the CUDA attention kernels need windows of at most ", kMaxTokens,
              " tokens and head_dim a multiple of ", kHeadDimMultiple, " up to ", kMaxHeadDim, ", got a window of ",
              s.grid.tokens, " tokens and head_dim ", s.head_dim);
}

const void* data_or_null(const std::optional<at::Tensor>& t) { return t.has_value() ? t->data_ptr() : nullptr; }

// Whether every tensor's data starts on a 16-byte boundary (grad_qkv, new_output's allocation, always does).
bool aligned16(std::initializer_list<at::Tensor> tensors) {
  for (const at::Tensor& t : tensors)
    if (reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 != 0) return false;
  return true;
}

std::tuple<at::Tensor, at::Tensor> window_attention_fwd(const at::Tensor& qkv, const std::optional<at::Tensor>& pad_qkv,
                                                        const std::optional<at::Tensor>& bias, int64_t num_heads,
                                                        at::IntArrayRef window, at::IntArrayRef shift,
                                                        bool roll_before_pad, double scale) {
  const AttentionSizes s = check_attention_args(qkv, pad_qkv, bias, num_heads, window, shift, roll_before_pad);
  check_cuda_attention(qkv, s);
  const c10::cuda::CUDAGuard guard(qkv.device());
  const int64_t windows = s.batch * s.grid.windows_per_image;
  at::Tensor out = new_output(s.out_shape, qkv.options());
  at::Tensor lse = new_output({windows, s.heads, s.grid.tokens}, qkv.options().dtype(at::kFloat));
  AttentionForwardArgs args{dtype_of(qkv), qkv.data_ptr(), data_or_null(pad_qkv), data_or_null(bias), out.data_ptr(),
                            lse.data_ptr<float>(), s.batch, static_cast<int32_t>(s.heads),
                            static_cast<int32_t>(s.head_dim), static_cast<float>(scale), s.grid};
  const KernelVariant variant = kernel_variant();
  TORCH_CHECK(variant != KernelVariant::kUnknown, "swin_kernels: SWIN_KERNELS_CUDA_KERNELS must be unset, "
              "'verified' or 'flash', got '", std::getenv("SWIN_KERNELS_CUDA_KERNELS"), "'");
  const bool flash = variant == KernelVariant::kFlash &&
                     flash_forward_supported(qkv.element_size(), s.grid.tokens, s.head_dim) &&
                     flash_grid_supported(s.batch, s.grid);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  C10_CUDA_CHECK(flash ? launch_attention_flash_forward(args, stream) : launch_attention_forward(args, stream));
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> window_attention_bwd(
    const at::Tensor& grad_out, const at::Tensor& qkv, const std::optional<at::Tensor>& pad_qkv,
    const std::optional<at::Tensor>& bias, const at::Tensor& lse, int64_t num_heads,
    at::IntArrayRef window, at::IntArrayRef shift, bool roll_before_pad, double scale) {
  const AttentionSizes s = check_attention_args(qkv, pad_qkv, bias, num_heads, window, shift, roll_before_pad);
  check_cuda_attention(qkv, s);
  check_attention_backward_args(s, qkv, grad_out, lse, at::kFloat);
  const c10::cuda::CUDAGuard guard(qkv.device());
  const int64_t n = s.grid.tokens, windows = s.batch * s.grid.windows_per_image;
  const KernelVariant variant = kernel_variant();
  TORCH_CHECK(variant != KernelVariant::kUnknown, "swin_kernels: SWIN_KERNELS_CUDA_KERNELS must be unset, "
              "'verified' or 'flash', got '", std::getenv("SWIN_KERNELS_CUDA_KERNELS"), "'");
  const bool flash = variant == KernelVariant::kFlash &&
                     flash_backward_supported(qkv.element_size(), s.grid, s.head_dim) &&
                     flash_grid_supported(s.batch, s.grid) &&
                     aligned16({qkv, grad_out}) && (!pad_qkv.has_value() || aligned16({*pad_qkv}));
  const int64_t per_chunk = flash ? flash::windows_per_block(s.batch, s.grid.windows_per_image, s.heads)
                                  : backward_windows_per_chunk(windows);
  const int64_t chunks = flash ? flash_backward_chunks(s.batch, s.grid.windows_per_image, s.heads)
                               : (windows + per_chunk - 1) / per_chunk;
  at::Tensor grad_qkv = new_output(qkv.sizes(), qkv.options());
  at::Tensor grad_pad = new_output({3 * s.channels}, qkv.options());
  at::Tensor grad_bias = new_output({s.heads, n, n}, qkv.options());
  at::Tensor pad_partials = at::empty({chunks, 3 * s.channels}, qkv.options().dtype(at::kFloat));
  at::Tensor bias_partials = at::empty({chunks, s.heads, n, n}, qkv.options().dtype(at::kFloat));
  AttentionBackwardArgs args{dtype_of(qkv),
                             grad_out.data_ptr(),
                             qkv.data_ptr(),
                             data_or_null(pad_qkv),
                             data_or_null(bias),
                             lse.data_ptr<float>(),
                             grad_qkv.data_ptr(),
                             grad_pad.data_ptr(),
                             grad_bias.data_ptr(),
                             pad_partials.data_ptr<float>(),
                             bias_partials.data_ptr<float>(),
                             s.batch,
                             static_cast<int32_t>(s.heads),
                             static_cast<int32_t>(s.head_dim),
                             static_cast<float>(scale),
                             s.grid,
                             per_chunk,
                             chunks};
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  C10_CUDA_CHECK(flash ? launch_attention_flash_backward(args, stream) : launch_attention_backward(args, stream));
  return {grad_qkv, grad_pad, grad_bias};
}

at::Tensor window_partition(const at::Tensor& x, at::IntArrayRef window, at::IntArrayRef shift, bool roll_before_pad) {
  TORCH_CHECK(x.is_cuda(), "swin_kernels: the CUDA kernels need CUDA tensors, got ", x.device());
  const maps::WindowGrid g = check_partition_args(x, window, shift, roll_before_pad);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = new_output({x.size(0) * g.windows_per_image, g.tokens, x.size(-1)}, x.options());
  C10_CUDA_CHECK(launch_window_partition(x.data_ptr(), out.data_ptr(), x.size(0), x.size(-1) * x.element_size(), g,
                                         c10::cuda::getCurrentCUDAStream()));
  return out;
}

at::Tensor window_reverse(const at::Tensor& windows, at::IntArrayRef window, at::IntArrayRef sizes,
                          at::IntArrayRef shift, bool roll_before_pad) {
  TORCH_CHECK(windows.is_cuda(), "swin_kernels: the CUDA kernels need CUDA tensors, got ", windows.device());
  const maps::WindowGrid g = check_reverse_args(windows, window, sizes, shift, roll_before_pad);
  const c10::cuda::CUDAGuard guard(windows.device());
  const int64_t batch = windows.size(0) / g.windows_per_image;
  at::DimVector shape{batch};
  shape.append(sizes.begin(), sizes.end());
  shape.push_back(windows.size(2));
  at::Tensor out = new_output(shape, windows.options());
  C10_CUDA_CHECK(launch_window_reverse(windows.data_ptr(), out.data_ptr(), batch,
                                       windows.size(2) * windows.element_size(), g,
                                       c10::cuda::getCurrentCUDAStream()));
  return out;
}

}  // namespace
}  // namespace cuda
}  // namespace swin_kernels

TORCH_LIBRARY_IMPL(swin_kernels, CUDA, m) {
  m.impl("window_attention_fwd", &swin_kernels::cuda::window_attention_fwd);
  m.impl("window_attention_bwd", &swin_kernels::cuda::window_attention_bwd);
  m.impl("window_partition", &swin_kernels::cuda::window_partition);
  m.impl("window_reverse", &swin_kernels::cuda::window_reverse);
}
