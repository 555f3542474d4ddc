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

// The windows of a call on a map of `sizes` = (H, W) or a volume of `sizes` = (D, H, W): window and shift have one
// entry per axis, window >= 1 and 0 <= shift < window on each. Returns the grid (a map is the volume of depth 1).
inline maps::WindowGrid check_geometry(at::IntArrayRef sizes, at::IntArrayRef window, at::IntArrayRef shift,
                                       bool roll_before_pad) {
  const size_t axes = sizes.size();
  TORCH_CHECK((axes == 2 || axes == 3) && window.size() == axes && shift.size() == axes,
              "swin_kernels: window and shift need one entry per spatial axis ((rows, columns) for a map, (depth, rows, "
              "columns) for a volume), got window ", window, " and shift ", shift, " for spatial sizes ", sizes);
  for (size_t axis = 0; axis < axes; ++axis) {
    TORCH_CHECK(window[axis] >= 1 && window[axis] <= 1 << 20, "swin_kernels: window must be >= 1, got ", window);
    TORCH_CHECK(shift[axis] >= 0 && shift[axis] < window[axis],
                "swin_kernels: shift must satisfy 0 <= shift < window on each axis, got shift ", shift, " and window ",
                window);
    TORCH_CHECK(sizes[axis] >= 1, "swin_kernels: spatial sizes must be >= 1, got ", sizes);
  }
  const auto i32 = [](int64_t v) { return static_cast<int32_t>(v); };
  if (axes == 2)
    return maps::make_grid(sizes[0], sizes[1], i32(window[0]), i32(window[1]), i32(shift[0]), i32(shift[1]),
                           roll_before_pad);
  return maps::make_grid(sizes[0], sizes[1], sizes[2], i32(window[0]), i32(window[1]), i32(window[2]), i32(shift[0]),
                         i32(shift[1]), i32(shift[2]), roll_before_pad);
}

// A (B, H, W, C) map or (B, D, H, W, C) volume; its spatial sizes are t.sizes().slice(1, t.dim() - 2).
inline void check_map(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 4 || t.dim() == 5, "swin_kernels: ", name, " must be (B, H, W, C) or (B, D, H, W, C), got shape ",
              t.sizes());
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
  int64_t batch, heads, head_dim, channels;
  at::DimVector out_shape;  // qkv's shape with C channels: (B, H, W, C) or (B, D, H, W, C)
  maps::WindowGrid grid;
};

inline at::IntArrayRef spatial_sizes(const at::Tensor& map) { return map.sizes().slice(1, map.dim() - 2); }

inline AttentionSizes check_attention_args(const at::Tensor& qkv, const std::optional<at::Tensor>& pad_qkv,
                                           const std::optional<at::Tensor>& bias, int64_t num_heads,
                                           at::IntArrayRef window, at::IntArrayRef shift, bool roll_before_pad) {
  check_map(qkv, "qkv");
  AttentionSizes s;
  s.batch = qkv.size(0);
  const int64_t c3 = qkv.size(-1);
  TORCH_CHECK(num_heads >= 1 && c3 % (3 * num_heads) == 0, "swin_kernels: qkv's last dimension ", c3,
              " is not 3 * num_heads * head_dim with num_heads = ", num_heads);
  s.heads = num_heads;
  s.head_dim = c3 / (3 * num_heads);
  s.channels = c3 / 3;
  s.out_shape = at::DimVector(qkv.sizes());
  s.out_shape.back() = s.channels;
  s.grid = check_geometry(spatial_sizes(qkv), window, shift, roll_before_pad);
  if (pad_qkv.has_value()) check_like(*pad_qkv, qkv, "pad_qkv", {c3});
  const int64_t n = s.grid.tokens;
  if (bias.has_value()) check_like(*bias, qkv, "bias", {num_heads, n, n});
  return s;
}

inline void check_attention_backward_args(const AttentionSizes& s, const at::Tensor& qkv, const at::Tensor& grad_out,
                                          const at::Tensor& lse, at::ScalarType lse_dtype) {
  const int64_t windows = s.batch * s.grid.windows_per_image;
  check_like(grad_out, qkv, "grad_out", s.out_shape);
  TORCH_CHECK(lse.scalar_type() == lse_dtype, "swin_kernels: lse must be ", lse_dtype, ", got ", lse.scalar_type());
  TORCH_CHECK(lse.device() == qkv.device() && lse.is_contiguous(), "swin_kernels: lse must be contiguous on ",
              qkv.device());
  TORCH_CHECK(lse.sizes() == at::IntArrayRef({windows, s.heads, static_cast<int64_t>(s.grid.tokens)}),
              "swin_kernels: lse must have shape (B*nW, heads, N) = (", windows, ", ", s.heads, ", ", s.grid.tokens,
              "), got ", lse.sizes());
}

// The (B, [D,] H, W, C) map of window_partition / the (B*nW, N, C) windows of window_reverse.
inline maps::WindowGrid check_partition_args(const at::Tensor& x, at::IntArrayRef window, at::IntArrayRef shift,
                                             bool roll_before_pad) {
  check_map(x, "x");
  return check_geometry(spatial_sizes(x), window, shift, roll_before_pad);
}

inline maps::WindowGrid check_reverse_args(const at::Tensor& windows, at::IntArrayRef window, at::IntArrayRef sizes,
                                           at::IntArrayRef shift, bool roll_before_pad) {
  const maps::WindowGrid g = check_geometry(sizes, window, shift, roll_before_pad);
  TORCH_CHECK(windows.dim() == 3 && windows.is_contiguous(),
              "swin_kernels: windows must be a contiguous (B*nW, N, C) tensor, got shape ", windows.sizes());
  TORCH_CHECK(windows.size(0) > 0 && windows.size(0) % g.windows_per_image == 0 && windows.size(1) == g.tokens &&
                  windows.size(2) > 0,
              "swin_kernels: windows of shape ", windows.sizes(), " do not tile spatial sizes ", sizes,
              " with window ", window, ": expected (B*", g.windows_per_image, ", ", g.tokens, ", C)");
  return g;
}

}  // namespace swin_kernels
