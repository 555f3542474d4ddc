// Shared-memory layout of the attention kernels (host and device), one 64-token window and one head per block.
#pragma once

#include <stdint.h>

#include "../index_maps.h"

namespace swin_kernels {
namespace cuda {

constexpr int kTile = 64;  // tokens of a window, padded: the tensor-core tiles are 16 x 16

struct AttentionSmem {
  int64_t q, k, v, dout;  // kTile x d, element type (q pre-scaled)
  int64_t scores;         // kTile x kTile fp32: S, then P (backward)
  int64_t dscores;        // kTile x kTile fp32 (backward): dP, then dS
  int64_t probs;          // kTile x kTile element type: P (then dS in the backward), the GEMM operand
  int64_t product;        // kTile x d fp32 output of the N x d GEMMs: aliases scores (fwd) / dscores (bwd)
  int64_t row_d, row_lse, pad_acc;  // backward: D_i, lse_i, padded tokens' gradient sums (3 x d)
  int64_t bias_acc;                 // backward: kTile x kTile fp32, the chunk's sum of dS
  int64_t pixel, region;
  int64_t bytes;
};

SWIN_HOST_DEVICE int64_t smem_align(int64_t bytes) { return (bytes + 127) / 128 * 128; }

SWIN_HOST_DEVICE AttentionSmem attention_smem(int64_t element_bytes, int64_t head_dim, bool backward) {
  AttentionSmem s{};
  int64_t at = 0;
  const int64_t rows = kTile * head_dim * element_bytes, square = kTile * kTile;
  s.q = at, at += smem_align(rows);
  s.k = at, at += smem_align(rows);
  s.v = at, at += smem_align(rows);
  if (backward) s.dout = at, at += smem_align(rows);
  s.scores = at, at += smem_align(square * 4);
  if (backward) s.dscores = at, at += smem_align(square * 4);
  s.probs = at, at += smem_align(square * element_bytes);
  s.product = backward ? s.dscores : s.scores;  // kTile x d <= kTile x kTile floats
  s.pixel = at, at += smem_align(kTile * 8);
  s.region = at, at += smem_align(kTile * 4);
  if (backward) {
    s.row_d = at, at += smem_align(kTile * 4);
    s.row_lse = at, at += smem_align(kTile * 4);
    s.pad_acc = at, at += smem_align(3 * head_dim * 4);
    s.bias_acc = at, at += smem_align(square * 4);
  }
  s.bytes = at;
  return s;
}

}  // namespace cuda
}  // namespace swin_kernels
