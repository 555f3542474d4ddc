// The op swin_kernels::cuda_limits() -> str: the CUDA kernels' limits as JSON (limits_json.h), for
// swin_kernels/ops/cuda.py. Registered by every build, the CPU-only one included, so that the Python side never
// keeps a copy of a C++ limit: include this file exactly once, from csrc/swin_kernels.cpp (a second inclusion
// registers the op twice, which fails when the library loads).
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
