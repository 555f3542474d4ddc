// Argument checks and output allocation shared by the CPU and CUDA implementations of the ops.
// The Python API validates calls before they get here; these checks keep direct torch.ops calls safe.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "index_maps.h"

namespace swin_kernels {

// Outputs start as NaN when SWIN_KERNELS_POISON_OUTPUTS=1, so a test sees any element a kernel forgets.
inline at::Tensor new_output(at::IntArrayRef shape, const at::TensorOptions& options) {
  const char* poison = std::getenv("SWIN_KERNELS_POISON_OUTPUTS");
  if (poison != nullptr && std::strcmp(poison, "1") == 0) return at::full(shape, NAN, options);
  return at::empty(shape, options);
}

inline void check_window(int64_t window, int64_t shift) {
  TORCH_CHECK(window >= 1, "swin_kernels: window must be >= 1, got ", window);
  TORCH_CHECK(shift >= 0 && shift < window, "swin_kernels: shift must satisfy 0 <= shift < window, got shift ", shift,
              " and window ", window);
}

inline void check_map(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 4, "swin_kernels: ", name, " must be (B, H, W, C), got shape ", t.sizes());
  TORCH_CHECK(t.numel() > 0, "swin_kernels: ", name, " is empty: ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "swin_kernels: ", name, " must be contiguous");
}

inline void check_like(const at::Tensor& t, const at::Tensor& like, const char* name, at::IntArrayRef shape) {
  TORCH_CHECK(t.device() == like.device(), "swin_kernels: ", name, " is on ", t.device(), ", qkv on ", like.device());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "swin_kernels: ", name, " has dtype ", t.scalar_type(),
              ", qkv has ", like.scalar_type());
  TORCH_CHECK(t.sizes() == shape, "swin_kernels: ", name, " must have shape ", shape, ", got ", t.sizes());
  TORCH_CHECK(t.is_contiguous(), "swin_kernels: ", name, " must be contiguous");
}

// Sizes of one attention call, checked.
struct AttentionSizes {
  int64_t batch, height, width, heads, head_dim, channels;
  maps::WindowGrid grid;
};

inline AttentionSizes check_attention_args(const at::Tensor& qkv, const std::optional<at::Tensor>& pad_qkv,
                                           const std::optional<at::Tensor>& bias, int64_t num_heads, int64_t window,
                                           int64_t shift) {
  check_map(qkv, "qkv");
  check_window(window, shift);
  AttentionSizes s;
  s.batch = qkv.size(0);
  s.height = qkv.size(1);
  s.width = qkv.size(2);
  const int64_t c3 = qkv.size(3);
  TORCH_CHECK(num_heads >= 1 && c3 % (3 * num_heads) == 0, "swin_kernels: qkv's last dimension ", c3,
              " is not 3 * num_heads * head_dim with num_heads = ", num_heads);
  s.heads = num_heads;
  s.head_dim = c3 / (3 * num_heads);
  s.channels = c3 / 3;
  s.grid = maps::make_grid(s.height, s.width, static_cast<int32_t>(window), static_cast<int32_t>(shift));
  if (pad_qkv.has_value()) check_like(*pad_qkv, qkv, "pad_qkv", {c3});
  const int64_t n = s.grid.tokens;
  if (bias.has_value()) check_like(*bias, qkv, "bias", {num_heads, n, n});
  return s;
}

inline void check_attention_backward_args(const AttentionSizes& s, const at::Tensor& qkv, const at::Tensor& grad_out,
                                          const at::Tensor& lse, at::ScalarType lse_dtype) {
  const int64_t windows = s.batch * s.grid.windows_per_image;
  check_like(grad_out, qkv, "grad_out", {s.batch, s.height, s.width, s.channels});
  TORCH_CHECK(lse.scalar_type() == lse_dtype, "swin_kernels: lse must be ", lse_dtype, ", got ", lse.scalar_type());
  TORCH_CHECK(lse.device() == qkv.device() && lse.is_contiguous(), "swin_kernels: lse must be contiguous on ",
              qkv.device());
  TORCH_CHECK(lse.sizes() == at::IntArrayRef({windows, s.heads, static_cast<int64_t>(s.grid.tokens)}),
              "swin_kernels: lse must have shape (B*nW, heads, N) = (", windows, ", ", s.heads, ", ", s.grid.tokens,
              "), got ", lse.sizes());
}

// The (B, H, W, C) map of window_partition / the (B*nW, N, C) windows of window_reverse.
inline maps::WindowGrid check_partition_args(const at::Tensor& x, int64_t window, int64_t shift) {
  check_map(x, "x");
  check_window(window, shift);
  return maps::make_grid(x.size(1), x.size(2), static_cast<int32_t>(window), static_cast<int32_t>(shift));
}

inline maps::WindowGrid check_reverse_args(const at::Tensor& windows, int64_t window, int64_t height, int64_t width,
                                           int64_t shift) {
  check_window(window, shift);
  TORCH_CHECK(height >= 1 && width >= 1, "swin_kernels: height and width must be >= 1, got ", height, "x", width);
  TORCH_CHECK(windows.dim() == 3 && windows.is_contiguous(),
              "swin_kernels: windows must be a contiguous (B*nW, N, C) tensor, got shape ", windows.sizes());
  const maps::WindowGrid g = maps::make_grid(height, width, static_cast<int32_t>(window), static_cast<int32_t>(shift));
  TORCH_CHECK(windows.size(0) > 0 && windows.size(0) % g.windows_per_image == 0 && windows.size(1) == g.tokens &&
                  windows.size(2) > 0,
              "swin_kernels: windows of shape ", windows.sizes(), " do not tile a ", height, "x", width,
              " map with window ", window, ": expected (B*", g.windows_per_image, ", ", g.tokens, ", C)");
  return g;
}

}  // namespace swin_kernels
