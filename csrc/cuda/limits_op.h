// The op swin_kernels::cuda_limits() -> str: the CUDA kernels' limits as JSON (limits_json.h), which
// swin_kernels/ops/cuda.py reads instead of keeping a copy of any C++ limit. Include this file in exactly one
// translation unit of the extension (a second one registers the op twice, which fails when the library loads):
// csrc/swin_kernels.cpp, so every build has it, the CPU-only one included (a CPU-only install can still say what
// the CUDA kernels would accept).
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
