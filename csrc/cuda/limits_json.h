// The limits of kernel_limits.h as one JSON object: what the op cuda_limits() returns (limits_op.h) and what
// tools/cuda_check.py prints from the sources. Host code, plain C++.
#pragma once

#include <string>

#include "kernel_limits.h"

namespace swin_kernels {
namespace cuda {

//   max_tokens, head_dim_multiple, max_head_dim: a window of N <= max_tokens tokens, head_dim a multiple of
//     head_dim_multiple up to max_head_dim;
//   bf16_min_capability: [major, minor];
//   threads: threads per block of the attention kernels;
//   attention_smem: [{pass, element_bytes, head_dim, bytes}] for every supported configuration (pass: forward,
//     backward, or flash_forward / flash_backward: the flash-style kernels, fp16/bf16 only);
//   smem_optin: [{capability: [major, minor], bytes}], smem_optin_other: bytes for a capability not listed.
inline std::string limits_json() {
  const auto num = [](int64_t v) { return std::to_string(v); };
  const auto capability = [&](int cc) { return "[" + num(cc / 10) + ", " + num(cc % 10) + "]"; };
  std::string s = "{\"max_tokens\": " + num(kMaxTokens) + ", \"head_dim_multiple\": " + num(kHeadDimMultiple) +
                  ", \"max_head_dim\": " + num(kMaxHeadDim) + ", \"bf16_min_capability\": " +
                  capability(kBf16MinCapability) + ", \"threads\": " + num(kThreads) + ", \"attention_smem\": [";
  bool first = true;
  for (int backward = 0; backward < 2; ++backward)
    for (int element_bytes = 2; element_bytes <= 4; element_bytes += 2)
      for (int head_dim = kHeadDimMultiple; head_dim <= kMaxHeadDim; head_dim += kHeadDimMultiple) {
        s += std::string(first ? "" : ", ") + "{\"pass\": \"" + (backward ? "backward" : "forward") +
             "\", \"element_bytes\": " + num(element_bytes) + ", \"head_dim\": " + num(head_dim) +
             ", \"bytes\": " + num(attention_smem_bytes(element_bytes, head_dim, backward != 0)) + "}";
        first = false;
      }
  for (int backward = 0; backward < 2; ++backward)
    for (int head_dim = kHeadDimMultiple; head_dim <= kMaxHeadDim; head_dim += kHeadDimMultiple)
      s += std::string(", ") + "{\"pass\": \"" + (backward ? "flash_backward" : "flash_forward") +
           "\", \"element_bytes\": 2, \"head_dim\": " + num(head_dim) + ", \"bytes\": " +
           num(backward ? flash_backward_smem_bytes(head_dim) : flash_forward_smem_bytes(head_dim)) + "}";
  s += "], \"smem_optin\": [";
  first = true;
  for (const SmemOptin& entry : kSmemOptin) {
    s += std::string(first ? "" : ", ") + "{\"capability\": " + capability(entry.capability) +
         ", \"bytes\": " + num(entry.bytes) + "}";
    first = false;
  }
  return s + "], \"smem_optin_other\": " + num(kSmemOptinOther) + "}";
}

}  // namespace cuda
}  // namespace swin_kernels
