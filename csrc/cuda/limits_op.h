// The op swin_kernels::cuda_limits() -> str: the CUDA kernels' limits as JSON (limits_json.h), which
// swin_kernels/ops/cuda.py reads instead of keeping a copy of any C++ limit. Include this file in exactly one
// translation unit of the extension (a second one registers the op twice, which fails when the library loads):
// csrc/cuda/ops_cuda.cpp, so builds with the CUDA kernels have it; moved to csrc/swin_kernels.cpp, every build,
// the CPU-only one included, would.
#pragma once

#include <torch/library.h>

#include <string>

#include "limits_json.h"

namespace swin_kernels {
namespace cuda {
inline std::string cuda_limits() { return limits_json(); }
}  // namespace cuda
}  // namespace swin_kernels

TORCH_LIBRARY_FRAGMENT(swin_kernels, m) { m.def("cuda_limits() -> str", &swin_kernels::cuda::cuda_limits); }
