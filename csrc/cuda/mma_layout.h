// Index arithmetic of the flash-style attention kernels (attention_flash_forward.cu), stated as small
// __host__ __device__ constexpr functions so that a host test (csrc/tests/test_mma_layout.cpp) can simulate a warp's
// 32 lanes with them and compare with plain matrix products: which lane holds which (row, column) of the tensor-core
// fragments of mma.sync.m16n8k16 (fp16/bf16 inputs, fp32 accumulators), which row address each lane gives ldmatrix,
// the padded (bank-conflict-free) shared-memory rows, and the 16-byte units of the output staging.
//
// The fragment layouts are PTX's (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), with
// groupID = lane / 4 and tid = lane % 4:
//   A (16 x 16, row-major), 4 registers of 2 elements: a[i], i = 0..7, row = groupID (+8 for i in {2,3,6,7}),
//     column = 2 tid + (i & 1) (+8 for i >= 4);
//   B (16 x 8, "col"), 2 registers of 2 elements: b[i], i = 0..3, k = 2 tid + (i & 1) (+8 for i >= 2), n = groupID;
//   C, D (16 x 8, fp32): c[i], i = 0..3, row = groupID (+8 for i >= 2), column = 2 tid + (i & 1).
// ldmatrix.x4 loads four 8 x 8 matrices of 16-bit elements; lanes 8j..8j+7 give the row addresses of matrix j, and
// register j of lane l receives row l/4, columns 2(l%4), 2(l%4)+1 of matrix j (with .trans: rows 2(l%4), 2(l%4)+1
// of column l/4, i.e. the transposed matrix's row l/4).
#pragma once

#include <stdint.h>

#include "../index_maps.h"  // SWIN_HOST_DEVICE

#if defined(__CUDACC__) || defined(__HIPCC__)
#define SWIN_CONSTEXPR __host__ __device__ __forceinline__ constexpr
#else
#define SWIN_CONSTEXPR inline constexpr
#endif

namespace swin_kernels {
namespace cuda {
namespace mma {

constexpr int kWarpSize = 32;
constexpr int kRowsPerWarp = 16;  // the m of m16n8k16: each warp owns 16 query rows
constexpr int kN = 8;             // the n of a C tile
constexpr int kK = 16;            // the k of one mma step
constexpr int kPadElements = 8;   // 16 bytes of padding after each 16-bit shared-memory row

SWIN_CONSTEXPR int group_of(int lane) { return lane >> 2; }
SWIN_CONSTEXPR int tid_of(int lane) { return lane & 3; }

// ------------------------------------------------------------------------------------- fragment ownership
// A fragment element i (0..7) of lane: its (row, column) in the 16 x 16 tile.
SWIN_CONSTEXPR int a_row(int lane, int i) { return group_of(lane) + ((i & 2) ? 8 : 0); }
SWIN_CONSTEXPR int a_col(int lane, int i) { return 2 * tid_of(lane) + (i & 1) + ((i & 4) ? 8 : 0); }
// B fragment element i (0..3) of lane: its (k, n) in the 16 x 8 tile.
SWIN_CONSTEXPR int b_k(int lane, int i) { return 2 * tid_of(lane) + (i & 1) + ((i & 2) ? 8 : 0); }
SWIN_CONSTEXPR int b_n(int lane, int /*i*/) { return group_of(lane); }
// C fragment element i (0..3) of lane: its (row, column) in the 16 x 8 tile.
SWIN_CONSTEXPR int c_row(int lane, int i) { return group_of(lane) + ((i & 2) ? 8 : 0); }
SWIN_CONSTEXPR int c_col(int lane, int i) { return 2 * tid_of(lane) + (i & 1); }

// P = softmax(S) goes from the C fragments of S (n-tiles of 8 columns) to the A fragments of the P v product
// (k-steps of 16 columns) without leaving the registers: A register r (0..3) of k-step kk is the pair of C elements
// (2 (r & 1), 2 (r & 1) + 1) of n-tile 2 kk + (r >> 1).
SWIN_CONSTEXPR int p_tile_of_a_register(int kk, int reg) { return 2 * kk + (reg >> 1); }
SWIN_CONSTEXPR int p_first_c_of_a_register(int reg) { return 2 * (reg & 1); }

// ------------------------------------------------------------------------------ padded shared-memory rows
// A row of D 16-bit elements is followed by kPadElements of padding: D a multiple of 16 makes the pitch an odd
// number of 16-byte units, so the 8 row addresses of one ldmatrix phase (8 consecutive rows, 16 bytes each) fall on
// 8 distinct groups of 4 banks: conflict-free.
SWIN_CONSTEXPR int smem_pitch(int head_dim) { return head_dim + kPadElements; }
SWIN_CONSTEXPR int smem_tile_elements(int rows, int head_dim) { return rows * smem_pitch(head_dim); }
SWIN_CONSTEXPR int smem_offset(int row, int col, int head_dim) { return row * smem_pitch(head_dim) + col; }

// The head's bias tile, fp32, rows of `tile` + 8 floats: a warp's 8-byte loads of a C fragment's column pairs
// (rows groupID, columns 2 tid + 8 j) fall on distinct banks in each half-warp phase.
SWIN_CONSTEXPR int bias_pitch(int tile) { return tile + 8; }
SWIN_CONSTEXPR int bias_offset(int row, int col, int tile) { return row * bias_pitch(tile) + col; }

// ---------------------------------------------------------------------------------- ldmatrix row addresses
// The (row, column) of the 16-byte row that `lane` gives ldmatrix.x4 in each use (added to the tile's origin).
//
// q (A of S = q k^T), rows r0..r0+15, columns k0..k0+15 of row-major q: matrices (rows 0-7, cols 0-7),
// (rows 8-15, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols 8-15) are A registers 0..3.
SWIN_CONSTEXPR int ldm_a_row(int lane) { return (lane & 7) + ((lane & 8) ? 8 : 0); }
SWIN_CONSTEXPR int ldm_a_col(int lane) { return (lane & 16) ? 8 : 0; }
// k (B of S = q k^T: B(kd, n) = k[n][kd], k row-major [token][d]), without .trans, two n-tiles n0, n0+8 of one
// k-step: matrices (tokens n0.., d k0..), (tokens n0.., d k0+8..), (tokens n0+8.., d k0..), (tokens n0+8.., d k0+8..)
// are B registers (0, 1) of n-tile n0 and (0, 1) of n-tile n0+8.
SWIN_CONSTEXPR int ldm_kt_row(int lane) { return (lane & 7) + ((lane & 16) ? 8 : 0); }
SWIN_CONSTEXPR int ldm_kt_col(int lane) { return (lane & 8) ? 8 : 0; }
// v (B of O = P v: B(kt, n) = v[kt][n], v row-major [token][d]), with .trans, two n-tiles n0, n0+8 of one k-step:
// matrices (tokens k0.., d n0..), (tokens k0+8.., d n0..), (tokens k0.., d n0+8..), (tokens k0+8.., d n0+8..)
// are B registers (0, 1) of n-tile n0 and (0, 1) of n-tile n0+8.
SWIN_CONSTEXPR int ldm_v_row(int lane) { return (lane & 7) + ((lane & 8) ? 8 : 0); }
SWIN_CONSTEXPR int ldm_v_col(int lane) { return (lane & 16) ? 8 : 0; }

// The transpose of a row-major tile as A (dK = dS^T q, dV = P^T dO in the backward: A(j, i) = dS[i][j], stored
// [query i][key j]), with .trans, rows (keys) j0..j0+15, columns (queries) i0..i0+15: matrices (queries i0.., keys
// j0..), (queries i0.., keys j0+8..), (queries i0+8.., keys j0..), (queries i0+8.., keys j0+8..) are A registers
// 0..3; the lane gives row (query) i0 + ldm_at_row(lane), column (key) j0 + ldm_at_col(lane).
SWIN_CONSTEXPR int ldm_at_row(int lane) { return (lane & 7) + ((lane & 16) ? 8 : 0); }
SWIN_CONSTEXPR int ldm_at_col(int lane) { return (lane & 8) ? 8 : 0; }

// The backward's P and dS tiles: kTile x kTile 16-bit elements in rows of tile + 8 (an odd number of 16-byte units).
SWIN_CONSTEXPR int score_pitch(int tile) { return tile + kPadElements; }
SWIN_CONSTEXPR int score_offset(int row, int col, int tile) { return row * score_pitch(tile) + col; }

// ------------------------------------------------------------------------------------ output staging
// A warp's 16 x D output rows, written from its C fragments into its own 16 rows of the padded q tile (which it
// alone reads), then read back in 16-byte units: unit u (0 .. 16 D / 8 - 1) of the warp is row u % 16, columns
// 8 (u / 16) .. +7; lane l moves units l, l + 32, ... So the 8 lanes of one shared-memory phase read the same
// columns of 8 consecutive rows (distinct banks, the pitch being an odd number of units), and the two lanes that
// write a token's row in one instruction write 32 contiguous bytes (one sector).
SWIN_CONSTEXPR int out_units(int head_dim) { return kRowsPerWarp * head_dim / 8; }
SWIN_CONSTEXPR int out_unit_row(int unit, int /*head_dim*/) { return unit % kRowsPerWarp; }
SWIN_CONSTEXPR int out_unit_col(int unit, int /*head_dim*/) { return 8 * (unit / kRowsPerWarp); }

// ------------------------------------------------------------------------------------ global addresses
// Element offset of column `col` of the `part` slice (0 q, 1 k, 2 v; `channels` C apart) of head `head` in the row
// of `pixel` of a (B, [D,] H, W, parts * C) map: 64-bit, a map may hold more than 2^31 elements.
SWIN_CONSTEXPR int64_t map_offset(int64_t pixel, int64_t row_elements, int64_t part, int64_t channels, int head,
                                  int head_dim, int col) {
  return pixel * row_elements + part * channels + static_cast<int64_t>(head) * head_dim + col;
}
// Offset of row i of the (windows, heads, N) log-sum-exp of window bw and head h.
SWIN_CONSTEXPR int64_t lse_offset(int64_t bw, int heads, int h, int tokens, int i) {
  return (bw * heads + h) * static_cast<int64_t>(tokens) + i;
}

}  // namespace mma
}  // namespace cuda
}  // namespace swin_kernels
