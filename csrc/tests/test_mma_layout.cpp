// Host test of csrc/cuda/mma_layout.h, the index arithmetic of the flash-style CUDA attention kernel
// (attention_flash_forward.cu), without a GPU:
//   * the fragment ownership functions against the PTX ISA's tables of mma.m16n8k16 (transcribed here per register,
//     independently of the header's bit arithmetic), and every fragment element owned by exactly one (lane, slot);
//   * ldmatrix and mma.sync simulated for a warp's 32 lanes from the PTX definitions, fed with the header's lane
//     addresses: A from q, B from k (no .trans) and from v (.trans) assemble C = A B equal to a plain matmul;
//   * the whole forward of one window, warp by warp, step by step as the kernel does it (padded tiles, S = q k^T,
//     scale + bias + mask, quad max and sum, P from C fragments into A fragments, O = P v, the output staging in the
//     warp's q rows and the 16-byte units to the tokens) against a plain softmax attention in double: every output
//     element written exactly once, rows past N never written, the log-sum-exp too;
//   * bank-conflict freedom of every ldmatrix phase and of the output staging for each head_dim (and the degree
//     of the gather stores, reported);
//   * 64-bit offsets of the global addresses, the shared-memory size, the kernel selection setting.
// What it cannot show: that the device compiles these calls into the instructions the PTX tables describe (a GPU
// run does, tests/test_cuda_build.py with SWIN_KERNELS_CUDA_KERNELS=flash). Exit status 0 when all agree.
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "../cuda/flash_window.h"
#include "../cuda/kernel_limits.h"
#include "../cuda/mma_layout.h"

namespace mma = swin_kernels::cuda::mma;
using swin_kernels::cuda::kTile;

namespace {

constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;
int failures = 0;
void expect(bool ok, const char* what, int a = 0, int b = 0, int c = 0) {
  if (ok) return;
  if (++failures <= 30) std::printf("FAIL %s (%d, %d, %d)\n", what, a, b, c);
}

// ---------------------------------------------------------------------- the PTX ISA's tables, per register
// A (m16 x k16, .row): a0,a1: (groupID, 2 tig + {0,1}); a2,a3: (groupID + 8, 2 tig + {0,1});
//                      a4,a5: (groupID, 2 tig + 8 + {0,1}); a6,a7: (groupID + 8, 2 tig + 8 + {0,1}).
void ptx_a(int lane, int i, int* row, int* col) {
  const int group = lane / 4, tig = lane % 4;
  static const int row_add[8] = {0, 0, 8, 8, 0, 0, 8, 8};
  static const int col_add[8] = {0, 1, 0, 1, 8, 9, 8, 9};
  *row = group + row_add[i];
  *col = 2 * tig + col_add[i];
}
// B (k16 x n8, .col): b0,b1: (k = 2 tig + {0,1}, n = groupID); b2,b3: (k = 2 tig + 8 + {0,1}, n = groupID).
void ptx_b(int lane, int i, int* k, int* n) {
  const int group = lane / 4, tig = lane % 4;
  static const int k_add[4] = {0, 1, 8, 9};
  *k = 2 * tig + k_add[i];
  *n = group;
}
// C, D (m16 x n8, f32): c0,c1: (groupID, 2 tig + {0,1}); c2,c3: (groupID + 8, 2 tig + {0,1}).
void ptx_c(int lane, int i, int* row, int* col) {
  const int group = lane / 4, tig = lane % 4;
  static const int row_add[4] = {0, 0, 8, 8};
  static const int col_add[4] = {0, 1, 0, 1};
  *row = group + row_add[i];
  *col = 2 * tig + col_add[i];
}

// A warp's registers: 32 lanes x registers x 2 halves (16-bit elements, held as floats here).
template <int R>
using Regs = std::array<std::array<std::array<float, 2>, R>, 32>;

// ldmatrix.x4 (.trans when trans) from a shared tile of 16-bit elements (floats here), lane l giving the element
// offset addr[l] of one 8-element row: lanes 8j..8j+7 the rows of matrix j. Register j of lane l receives row l/4,
// elements 2(l%4), 2(l%4)+1 of matrix j; with .trans, element l/4 of rows 2(l%4) and 2(l%4)+1.
Regs<4> ldmatrix_x4(const std::vector<float>& smem, const std::array<int, 32>& addr, bool trans) {
  Regs<4> r{};
  for (int lane = 0; lane < 32; ++lane)
    for (int j = 0; j < 4; ++j)
      for (int h = 0; h < 2; ++h) {
        const int at = trans ? addr[8 * j + 2 * (lane % 4) + h] + lane / 4 : addr[8 * j + lane / 4] + 2 * (lane % 4) + h;
        r[lane][j][h] = smem.at(at);
      }
  return r;
}

// mma.sync.m16n8k16: D = A B + C with the fragments distributed as the PTX tables say; also checks that the
// fragments give every element of A and B exactly once.
void mma_16816(std::array<std::array<float, 4>, 32>& c, const std::array<std::array<std::array<float, 2>, 4>, 32>& a,
               const std::array<std::array<std::array<float, 2>, 2>, 32>& b) {
  float am[16][16], bm[16][8];
  int seen_a[16][16] = {}, seen_b[16][8] = {};
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 8; ++i) {
      int row, col;
      ptx_a(lane, i, &row, &col);
      am[row][col] = a[lane][i / 2][i % 2];
      ++seen_a[row][col];
    }
    for (int i = 0; i < 4; ++i) {
      int k, n;
      ptx_b(lane, i, &k, &n);
      bm[k][n] = b[lane][i / 2][i % 2];
      ++seen_b[k][n];
    }
  }
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) expect(seen_a[i][j] == 1, "A fragment covers its tile once", i, j);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) expect(seen_b[i][j] == 1, "B fragment covers its tile once", i, j);
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      int row, col;
      ptx_c(lane, i, &row, &col);
      double sum = c[lane][i];
      for (int kk = 0; kk < 16; ++kk) sum += static_cast<double>(am[row][kk]) * bm[kk][col];
      c[lane][i] = static_cast<float>(sum);
    }
}

using Frag = std::array<std::array<std::array<float, 2>, 4>, 32>;
using BFrag = std::array<std::array<std::array<float, 2>, 2>, 32>;
using CFrag = std::array<std::array<float, 4>, 32>;

// Every entry of the accumulator tiles c0 | c1 (16 x 8 each, side by side) at (r0, n0) against want(row, col).
template <typename Want>
void expect_tile_pair(const CFrag& c0, const CFrag& c1, int r0, int n0, Want want, const char* what, int head_dim) {
  for (int lane = 0; lane < 32; ++lane)
    for (int e = 0; e < 4; ++e)
      for (int t = 0; t < 2; ++t) {
        const int row = r0 + mma::c_row(lane, e), col = n0 + 8 * t + mma::c_col(lane, e);
        expect(std::fabs((t ? c1 : c0)[lane][e] - want(row, col)) < 1e-4, what, head_dim, row, col);
      }
}

BFrag b_pair(const Regs<4>& r, int second) {
  BFrag b{};
  for (int lane = 0; lane < 32; ++lane) b[lane] = {r[lane][2 * second], r[lane][2 * second + 1]};
  return b;
}

// ------------------------------------------------------------------------------------------ the checks
void check_fragment_ownership() {
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 8; ++i) {
      int row, col;
      ptx_a(lane, i, &row, &col);
      expect(mma::a_row(lane, i) == row && mma::a_col(lane, i) == col, "a_row/a_col = PTX", lane, i);
    }
    for (int i = 0; i < 4; ++i) {
      int k, n, row, col;
      ptx_b(lane, i, &k, &n);
      expect(mma::b_k(lane, i) == k && mma::b_n(lane, i) == n, "b_k/b_n = PTX", lane, i);
      ptx_c(lane, i, &row, &col);
      expect(mma::c_row(lane, i) == row && mma::c_col(lane, i) == col, "c_row/c_col = PTX", lane, i);
    }
  }
  // C of n-tiles (2kk, 2kk+1) -> A of k-step kk: the same (row, column) of the 16 x 16 tile, lane by lane
  for (int kk = 0; kk < kTile / 16; ++kk)
    for (int lane = 0; lane < 32; ++lane)
      for (int reg = 0; reg < 4; ++reg)
        for (int h = 0; h < 2; ++h) {
          const int tile = mma::p_tile_of_a_register(kk, reg), e = mma::p_first_c_of_a_register(reg) + h;
          int arow, acol;
          ptx_a(lane, 2 * reg + h, &arow, &acol);
          expect(mma::c_row(lane, e) == arow && tile * 8 + mma::c_col(lane, e) == 16 * kk + acol,
                 "P: C element -> A element of the same position", kk, lane, reg);
        }
}

// The tensor-core products on their own: q k^T and P v tiles through the header's ldmatrix addresses.
void check_products(int head_dim) {
  std::mt19937 gen(head_dim);
  std::uniform_real_distribution<float> uni(-1, 1);
  const int pitch = mma::smem_pitch(head_dim);
  std::vector<float> q(mma::smem_tile_elements(kTile, head_dim)), k(q.size()), v(q.size()), p(kTile * kTile);
  for (auto* t : {&q, &k, &v})
    for (float& x : *t) x = uni(gen);
  for (float& x : p) x = uni(gen);
  for (int r0 = 0; r0 < kTile; r0 += 16) {
    for (int n0 = 0; n0 < kTile; n0 += 16) {  // S[r0.., n0..n0+15] = q k^T
      CFrag c0{}, c1{};
      for (int k0 = 0; k0 < head_dim; k0 += 16) {
        std::array<int, 32> qa, ka;
        for (int lane = 0; lane < 32; ++lane) {
          qa[lane] = mma::smem_offset(r0 + mma::ldm_a_row(lane), k0 + mma::ldm_a_col(lane), head_dim);
          ka[lane] = mma::smem_offset(n0 + mma::ldm_kt_row(lane), k0 + mma::ldm_kt_col(lane), head_dim);
        }
        const Frag a = ldmatrix_x4(q, qa, false);
        const Regs<4> b = ldmatrix_x4(k, ka, false);
        mma_16816(c0, a, b_pair(b, 0));
        mma_16816(c1, a, b_pair(b, 1));
      }
      expect_tile_pair(c0, c1, r0, n0, [&](int row, int col) {
        double want = 0;
        for (int d = 0; d < head_dim; ++d) want += static_cast<double>(q[row * pitch + d]) * k[col * pitch + d];
        return want;
      }, "S = q k^T through ldmatrix + mma", head_dim);
    }
    for (int n0 = 0; n0 < head_dim; n0 += 16) {  // O[r0.., n0..n0+15] = P v, P's A fragments from a row-major tile
      CFrag c0{}, c1{};
      for (int k0 = 0; k0 < kTile; k0 += 16) {
        Frag a{};
        for (int lane = 0; lane < 32; ++lane)
          for (int i = 0; i < 8; ++i) {
            int row, col;
            ptx_a(lane, i, &row, &col);
            a[lane][i / 2][i % 2] = p[(r0 + row) * kTile + k0 + col];
          }
        std::array<int, 32> va;
        for (int lane = 0; lane < 32; ++lane)
          va[lane] = mma::smem_offset(k0 + mma::ldm_v_row(lane), n0 + mma::ldm_v_col(lane), head_dim);
        const Regs<4> b = ldmatrix_x4(v, va, true);
        mma_16816(c0, a, b_pair(b, 0));
        mma_16816(c1, a, b_pair(b, 1));
      }
      expect_tile_pair(c0, c1, r0, n0, [&](int row, int col) {
        double want = 0;
        for (int j = 0; j < kTile; ++j) want += static_cast<double>(p[row * kTile + j]) * v[j * pitch + col];
        return want;
      }, "O = P v through ldmatrix.trans + mma", head_dim);
    }
  }
}

// One window's forward, warp by warp, the kernel's steps (attention_flash_forward_kernel) with its index functions.
void check_window_forward(int head_dim, int n, bool with_bias, bool masked) {
  std::mt19937 gen(1000 * head_dim + n);
  std::uniform_real_distribution<float> uni(-2, 2);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  // the window's tokens (rows past n are zeros, as the gather leaves them), bias (n x n), regions
  std::vector<float> tq(kTile * head_dim, 0), tk(tq), tv(tq), bias(n * n);
  std::vector<int> region(kTile, -1);
  for (int t = 0; t < n; ++t) {
    for (int d = 0; d < head_dim; ++d) {
      tq[t * head_dim + d] = uni(gen);
      tk[t * head_dim + d] = uni(gen);
      tv[t * head_dim + d] = uni(gen);
    }
    region[t] = masked ? (t * 7 / n) % 3 : 0;
  }
  for (float& b : bias) b = with_bias ? uni(gen) : 0.0f;
  // the padded shared tiles, filled as load_qkv_padded does (unit by unit through smem_offset)
  std::vector<float> q(mma::smem_tile_elements(kTile, head_dim), std::nanf("")), k(q), v(q);
  for (int t = 0; t < kTile; ++t)
    for (int e = 0; e < head_dim; ++e) {
      q[mma::smem_offset(t, e, head_dim)] = tq[t * head_dim + e];
      k[mma::smem_offset(t, e, head_dim)] = tk[t * head_dim + e];
      v[mma::smem_offset(t, e, head_dim)] = tv[t * head_dim + e];
    }
  // the head's bias tile as the kernel stages it (thread x: column x % kTile of every other row)
  std::vector<float> bias_tile(kTile * mma::bias_pitch(kTile), std::nanf(""));
  std::vector<int> staged(kTile * kTile, 0);
  for (int thread = 0; thread < 128; ++thread) {
    const int j = thread % kTile, i0 = thread / kTile;
    for (int pass = 0; pass < kTile / 2; ++pass) {
      const int i = i0 + 2 * pass;
      float value = j < n ? 0.0f : -INFINITY;
      if (i < n && j < n) value = bias[i * n + j] * kLog2e;
      bias_tile[mma::bias_offset(i, j, kTile)] = value;
      ++staged[i * kTile + j];
    }
  }
  for (int e = 0; e < kTile * kTile; ++e) expect(staged[e] == 1, "every bias tile entry staged once", head_dim, n, e);
  std::vector<float> out(n * head_dim, std::nanf("")), lse(n, std::nanf(""));
  std::vector<int> written(kTile * head_dim, 0), lse_written(kTile, 0);
  const int k_steps = head_dim / 16, n_tiles = kTile / 8, o_tiles = head_dim / 8;
  for (int warp = 0; warp < kTile / 16; ++warp) {
    const int r0 = warp * mma::kRowsPerWarp;
    if (r0 >= n) continue;
    std::vector<Frag> qa(k_steps);
    for (int kk = 0; kk < k_steps; ++kk) {
      std::array<int, 32> addr;
      for (int lane = 0; lane < 32; ++lane)
        addr[lane] = mma::smem_offset(r0 + mma::ldm_a_row(lane), kk * 16 + mma::ldm_a_col(lane), head_dim);
      qa[kk] = ldmatrix_x4(q, addr, false);
    }
    std::vector<CFrag> s(n_tiles, CFrag{});
    for (int pair = 0; pair < n_tiles / 2; ++pair)
      for (int kk = 0; kk < k_steps; ++kk) {
        std::array<int, 32> addr;
        for (int lane = 0; lane < 32; ++lane)
          addr[lane] = mma::smem_offset(2 * pair * 8 + mma::ldm_kt_row(lane), kk * 16 + mma::ldm_kt_col(lane), head_dim);
        const Regs<4> b = ldmatrix_x4(k, addr, false);
        mma_16816(s[2 * pair], qa[kk], b_pair(b, 0));
        mma_16816(s[2 * pair + 1], qa[kk], b_pair(b, 1));
      }
    // base-2 logits: S scale log2e + the staged bias tile (log2e, -inf past N), the mask where regions differ
    bool masked_window = false;
    for (int lane = 0; lane < 32; ++lane)
      masked_window |= (lane < n && region[lane] != region[0]) || (lane + 32 < n && region[lane + 32] != region[0]);
    float row_max[32][2], row_sum[32][2];
    for (int lane = 0; lane < 32; ++lane)
      for (int half = 0; half < 2; ++half) {
        const int row = r0 + mma::c_row(lane, 2 * half);
        float m = -INFINITY;
        for (int j = 0; j < n_tiles; ++j)
          for (int e = 2 * half; e < 2 * half + 2; ++e) {
            const int col = j * 8 + mma::c_col(lane, e);
            expect(col == j * 8 + mma::c_col(lane, 2 * half) + (e & 1), "pairs of adjacent columns", lane, j, e);
            float x = std::fma(s[j][lane][e], scale * kLog2e, bias_tile.at(mma::bias_offset(row, col, kTile)));
            if (masked_window && region[col] != region[row]) x += -100.0f * kLog2e;
            s[j][lane][e] = x;
            m = std::fmax(m, x);
          }
        row_max[lane][half] = m;
      }
    for (int offset : {1, 2}) {
      float next[32][2];
      for (int lane = 0; lane < 32; ++lane)
        for (int half = 0; half < 2; ++half)
          next[lane][half] = std::fmax(row_max[lane][half], row_max[lane ^ offset][half]);
      std::copy(&next[0][0], &next[0][0] + 64, &row_max[0][0]);
    }
    std::vector<Frag> pa(kTile / 16);
    for (int lane = 0; lane < 32; ++lane) {
      row_sum[lane][0] = row_sum[lane][1] = 0;
      for (int kk = 0; kk < kTile / 16; ++kk)
        for (int reg = 0; reg < 4; ++reg) {
          const int j = mma::p_tile_of_a_register(kk, reg), e0 = mma::p_first_c_of_a_register(reg), half = e0 >> 1;
          const float p0 = std::exp2(s[j][lane][e0] - row_max[lane][half]);
          const float p1 = std::exp2(s[j][lane][e0 + 1] - row_max[lane][half]);
          row_sum[lane][half] += p0 + p1;
          pa[kk][lane][reg] = {p0, p1};
        }
    }
    for (int offset : {1, 2}) {
      float next[32][2];
      for (int lane = 0; lane < 32; ++lane)
        for (int half = 0; half < 2; ++half) next[lane][half] = row_sum[lane][half] + row_sum[lane ^ offset][half];
      std::copy(&next[0][0], &next[0][0] + 64, &row_sum[0][0]);
    }
    for (int lane = 0; lane < 32; ++lane)
      if (mma::tid_of(lane) == 0)
        for (int half = 0; half < 2; ++half) {
          const int row = r0 + mma::c_row(lane, 2 * half);
          if (row < n) {
            lse[row] = (row_max[lane][half] + std::log2(row_sum[lane][half])) * kLn2;
            ++lse_written[row];
          }
        }
    std::vector<CFrag> o(o_tiles, CFrag{});
    for (int kk = 0; kk < kTile / 16; ++kk)
      for (int pair = 0; pair < o_tiles / 2; ++pair) {
        std::array<int, 32> addr;
        for (int lane = 0; lane < 32; ++lane)
          addr[lane] = mma::smem_offset(kk * 16 + mma::ldm_v_row(lane), 2 * pair * 8 + mma::ldm_v_col(lane), head_dim);
        const Regs<4> b = ldmatrix_x4(v, addr, true);
        mma_16816(o[2 * pair], pa[kk], b_pair(b, 0));
        mma_16816(o[2 * pair + 1], pa[kk], b_pair(b, 1));
      }
    // the staging: C fragments / sum into the warp's q rows, then 16-byte units to the tokens
    for (int lane = 0; lane < 32; ++lane)
      for (int j = 0; j < o_tiles; ++j)
        for (int half = 0; half < 2; ++half) {
          const int e0 = 2 * half;
          const int at = mma::smem_offset(r0 + mma::c_row(lane, e0), j * 8 + mma::c_col(lane, e0), head_dim);
          expect(at % 2 == 0, "a staged pair is 4-byte aligned", head_dim, lane, j);
          q[at] = o[j][lane][e0] / row_sum[lane][half];
          q[at + 1] = o[j][lane][e0 + 1] / row_sum[lane][half];
        }
    expect(mma::out_units(head_dim) % 32 == 0, "whole rounds of output units", head_dim);
    for (int round = 0; round < mma::out_units(head_dim) / 32; ++round)
      for (int lane = 0; lane < 32; ++lane) {
        const int unit = lane + 32 * round, row = r0 + mma::out_unit_row(unit, head_dim);
        const int col = mma::out_unit_col(unit, head_dim);
        expect(mma::smem_offset(row, col, head_dim) % 8 == 0, "a 16-byte unit is 16-byte aligned", head_dim, unit);
        if (row >= n) continue;
        for (int e = 0; e < 8; ++e) {
          out[row * head_dim + col + e] = q[mma::smem_offset(row, col + e, head_dim)];
          ++written[row * head_dim + col + e];
        }
      }
  }
  // the reference: softmax(q k^T scale + bias + mask) v in double
  double worst = 0, worst_lse = 0;
  for (int i = 0; i < n; ++i) {
    std::vector<double> x(n);
    double m = -INFINITY, sum = 0;
    for (int j = 0; j < n; ++j) {
      double dot = 0;
      for (int d = 0; d < head_dim; ++d) dot += static_cast<double>(tq[i * head_dim + d]) * tk[j * head_dim + d];
      x[j] = dot * scale + bias[i * n + j] + (masked && region[i] != region[j] ? -100.0 : 0.0);
      m = std::fmax(m, x[j]);
    }
    for (int j = 0; j < n; ++j) sum += std::exp(x[j] - m);
    worst_lse = std::fmax(worst_lse, std::fabs(lse[i] - (m + std::log(sum))));
    expect(lse_written[i] == 1, "each row's lse written once", head_dim, n, i);
    for (int d = 0; d < head_dim; ++d) {
      double want = 0;
      for (int j = 0; j < n; ++j) want += std::exp(x[j] - m) / sum * tv[j * head_dim + d];
      worst = std::fmax(worst, std::fabs(out[i * head_dim + d] - want));
      expect(written[i * head_dim + d] == 1, "each output element written exactly once", head_dim, n, i * 1000 + d);
    }
  }
  for (int i = n; i < kTile; ++i) expect(lse_written[i] == 0, "no lse past N", head_dim, n, i);
  expect(worst < 1e-4 && worst_lse < 1e-4, "window forward = softmax attention", head_dim, n,
         static_cast<int>(1e6 * std::fmax(worst, worst_lse)));
}

// store_fragments (attention_flash_backward.cu): a warp's 16 x D C fragments times factor through rows r0.. of a
// padded stage tile, then 16-byte units to out (rows < n), counting the writes.
void store_fragments_sim(const std::vector<CFrag>& acc, float factor, int r0, int n, int head_dim,
                         std::vector<float>& stage, std::vector<float>& out, std::vector<int>& written) {
  for (int lane = 0; lane < 32; ++lane)
    for (int j = 0; j < head_dim / 8; ++j)
      for (int half = 0; half < 2; ++half) {
        const int e0 = 2 * half;
        const int at = mma::smem_offset(r0 + mma::c_row(lane, e0), j * 8 + mma::c_col(lane, e0), head_dim);
        stage[at] = acc[j][lane][e0] * factor;
        stage[at + 1] = acc[j][lane][e0 + 1] * factor;
      }
  for (int round = 0; round < mma::out_units(head_dim) / 32; ++round)
    for (int lane = 0; lane < 32; ++lane) {
      const int unit = lane + 32 * round, row = r0 + mma::out_unit_row(unit, head_dim);
      const int col = mma::out_unit_col(unit, head_dim);
      if (row >= n) continue;
      for (int e = 0; e < 8; ++e) {
        out[row * head_dim + col + e] = stage[mma::smem_offset(row, col + e, head_dim)];
        ++written[row * head_dim + col + e];
      }
    }
}

// One window's backward, the kernel's steps (attention_flash_backward_kernel) with its index functions, against
// the softmax attention gradients in double: dQ, dK, dV and d_bias, every element written (or accumulated) once.
void check_window_backward(int head_dim, int n, bool masked) {
  std::mt19937 gen(7000 * head_dim + n + masked);
  std::uniform_real_distribution<float> uni(-1.5, 1.5);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  std::vector<float> tq(kTile * head_dim, 0), tk(tq), tv(tq), tdo(tq), bias(n * n);
  std::vector<int> region(kTile, -1);
  for (int t = 0; t < n; ++t) {
    for (int d = 0; d < head_dim; ++d) {
      tq[t * head_dim + d] = uni(gen);
      tk[t * head_dim + d] = uni(gen);
      tv[t * head_dim + d] = uni(gen);
      tdo[t * head_dim + d] = uni(gen);
    }
    region[t] = masked ? (t * 5 / n) % 3 : 1;
  }
  for (float& b : bias) b = uni(gen);
  // the reference in double: P, lse, dV, dP, D, dS, dQ, dK
  std::vector<double> P(n * n), lse(n), dS(n * n);
  for (int i = 0; i < n; ++i) {
    double m = -INFINITY, sum = 0;
    std::vector<double> x(n);
    for (int j = 0; j < n; ++j) {
      double dot = 0;
      for (int d = 0; d < head_dim; ++d) dot += static_cast<double>(tq[i * head_dim + d]) * tk[j * head_dim + d];
      x[j] = dot * scale + bias[i * n + j] + (region[i] != region[j] ? -100.0 : 0.0);
      m = std::fmax(m, x[j]);
    }
    for (int j = 0; j < n; ++j) sum += std::exp(x[j] - m);
    lse[i] = m + std::log(sum);
    for (int j = 0; j < n; ++j) P[i * n + j] = std::exp(x[j] - lse[i]);
    double drow = 0;
    std::vector<double> dp(n);
    for (int j = 0; j < n; ++j) {
      for (int d = 0; d < head_dim; ++d) dp[j] += static_cast<double>(tdo[i * head_dim + d]) * tv[j * head_dim + d];
      drow += P[i * n + j] * dp[j];
    }
    for (int j = 0; j < n; ++j) dS[i * n + j] = P[i * n + j] * (dp[j] - drow);
  }
  // the kernel's tiles
  const int pitch_elems = mma::smem_tile_elements(kTile, head_dim);
  std::vector<float> q(pitch_elems, std::nanf("")), k(q), v(q), dout(q);
  for (int t = 0; t < kTile; ++t)
    for (int e = 0; e < head_dim; ++e) {
      q[mma::smem_offset(t, e, head_dim)] = tq[t * head_dim + e];
      k[mma::smem_offset(t, e, head_dim)] = tk[t * head_dim + e];
      v[mma::smem_offset(t, e, head_dim)] = tv[t * head_dim + e];
      dout[mma::smem_offset(t, e, head_dim)] = tdo[t * head_dim + e];
    }
  std::vector<float> p_tile(kTile * mma::score_pitch(kTile), std::nanf("")), ds_tile(p_tile);
  std::vector<float> bias_tile(kTile * mma::bias_pitch(kTile), std::nanf(""));
  for (int i = 0; i < kTile; ++i)
    for (int j = 0; j < kTile; ++j)
      bias_tile[mma::bias_offset(i, j, kTile)] = j < n ? (i < n ? bias[i * n + j] * kLog2e : 0.0f) : -INFINITY;
  std::vector<float> row_lse(kTile);
  for (int t = 0; t < kTile; ++t) row_lse[t] = t < n ? static_cast<float>(lse[t]) * kLog2e : 0.0f;
  bool masked_window = false;
  for (int lane = 0; lane < 32; ++lane)
    masked_window |= (lane < n && region[lane] != region[0]) || (lane + 32 < n && region[lane + 32] != region[0]);
  const int k_steps = head_dim / 16, n_tiles = kTile / 8, o_tiles = head_dim / 8, p_steps = kTile / 16;
  std::vector<float> dq(n * head_dim, std::nanf("")), dk(dq), dv(dq);
  std::vector<int> wq(kTile * head_dim, 0), wk(wq), wv(wq);
  std::vector<std::vector<CFrag>> dbias(4, std::vector<CFrag>(n_tiles, CFrag{})), dq_acc(4);
  // phase 1: every warp, up to the barrier
  for (int warp = 0; warp < 4; ++warp) {
    const int r0 = 16 * warp;
    std::vector<Frag> qa(k_steps), da(k_steps);
    for (int kk = 0; kk < k_steps; ++kk) {
      std::array<int, 32> addr;
      for (int lane = 0; lane < 32; ++lane)
        addr[lane] = mma::smem_offset(r0 + mma::ldm_a_row(lane), kk * 16 + mma::ldm_a_col(lane), head_dim);
      qa[kk] = ldmatrix_x4(q, addr, false);
      da[kk] = ldmatrix_x4(dout, addr, false);
    }
    std::vector<CFrag> s(n_tiles, CFrag{}), dp(n_tiles, CFrag{});
    for (int pair = 0; pair < n_tiles / 2; ++pair)
      for (int kk = 0; kk < k_steps; ++kk) {
        std::array<int, 32> addr;
        for (int lane = 0; lane < 32; ++lane)
          addr[lane] = mma::smem_offset(2 * pair * 8 + mma::ldm_kt_row(lane), kk * 16 + mma::ldm_kt_col(lane), head_dim);
        const Regs<4> bk = ldmatrix_x4(k, addr, false), bv = ldmatrix_x4(v, addr, false);
        mma_16816(s[2 * pair], qa[kk], b_pair(bk, 0));
        mma_16816(s[2 * pair + 1], qa[kk], b_pair(bk, 1));
        mma_16816(dp[2 * pair], da[kk], b_pair(bv, 0));
        mma_16816(dp[2 * pair + 1], da[kk], b_pair(bv, 1));
      }
    float row_sum[32][2] = {}, row_dot[32][2] = {};
    for (int lane = 0; lane < 32; ++lane)
      for (int half = 0; half < 2; ++half) {
        const int row = r0 + mma::c_row(lane, 2 * half);
        for (int j = 0; j < n_tiles; ++j)
          for (int e = 2 * half; e < 2 * half + 2; ++e) {
            const int col = j * 8 + mma::c_col(lane, e);
            float x = std::fma(s[j][lane][e], scale * kLog2e, bias_tile[mma::bias_offset(row, col, kTile)]);
            if (masked_window && region[col] != region[row]) x += -100.0f * kLog2e;
            s[j][lane][e] = std::exp2(x - row_lse[row]);
            row_sum[lane][half] += s[j][lane][e];
          }
      }
    for (int offset : {1, 2}) {
      float next[32][2];
      for (int lane = 0; lane < 32; ++lane)
        for (int half = 0; half < 2; ++half) next[lane][half] = row_sum[lane][half] + row_sum[lane ^ offset][half];
      std::copy(&next[0][0], &next[0][0] + 64, &row_sum[0][0]);
    }
    for (int lane = 0; lane < 32; ++lane)
      for (int half = 0; half < 2; ++half) {
        const float inv = r0 + mma::c_row(lane, 2 * half) < n ? 1.0f / row_sum[lane][half] : 0.0f;
        for (int j = 0; j < n_tiles; ++j)
          for (int e = 2 * half; e < 2 * half + 2; ++e) {
            s[j][lane][e] *= inv;
            row_dot[lane][half] += s[j][lane][e] * dp[j][lane][e];
          }
      }
    for (int offset : {1, 2}) {
      float next[32][2];
      for (int lane = 0; lane < 32; ++lane)
        for (int half = 0; half < 2; ++half) next[lane][half] = row_dot[lane][half] + row_dot[lane ^ offset][half];
      std::copy(&next[0][0], &next[0][0] + 64, &row_dot[0][0]);
    }
    std::vector<Frag> dsa(p_steps);
    for (int lane = 0; lane < 32; ++lane)
      for (int kk = 0; kk < p_steps; ++kk)
        for (int reg = 0; reg < 4; ++reg) {
          const int j = mma::p_tile_of_a_register(kk, reg), e0 = mma::p_first_c_of_a_register(reg), half = e0 >> 1;
          const float ds0 = s[j][lane][e0] * (dp[j][lane][e0] - row_dot[lane][half]);
          const float ds1 = s[j][lane][e0 + 1] * (dp[j][lane][e0 + 1] - row_dot[lane][half]);
          dbias[warp][j][lane][e0] += ds0;
          dbias[warp][j][lane][e0 + 1] += ds1;
          dsa[kk][lane][reg] = {ds0, ds1};
          const int at = mma::score_offset(r0 + mma::c_row(lane, e0), j * 8 + mma::c_col(lane, e0), kTile);
          ds_tile[at] = ds0;
          ds_tile[at + 1] = ds1;
          p_tile[at] = s[j][lane][e0];
          p_tile[at + 1] = s[j][lane][e0 + 1];
        }
    dq_acc[warp].assign(o_tiles, CFrag{});
    for (int kk = 0; kk < p_steps; ++kk)
      for (int pair = 0; pair < o_tiles / 2; ++pair) {
        std::array<int, 32> addr;
        for (int lane = 0; lane < 32; ++lane)
          addr[lane] = mma::smem_offset(kk * 16 + mma::ldm_v_row(lane), 2 * pair * 8 + mma::ldm_v_col(lane), head_dim);
        const Regs<4> bk = ldmatrix_x4(k, addr, true);
        mma_16816(dq_acc[warp][2 * pair], dsa[kk], b_pair(bk, 0));
        mma_16816(dq_acc[warp][2 * pair + 1], dsa[kk], b_pair(bk, 1));
      }
  }
  // phase 2 (after the barrier), warp by warp on the shared tiles: a warp staging into rows another reads shows here
  for (int warp = 0; warp < 4; ++warp) {
    const int r0 = 16 * warp;
    store_fragments_sim(dq_acc[warp], scale, r0, n, head_dim, v, dq, wq);
    std::vector<CFrag> acc_k(o_tiles, CFrag{}), acc_v(o_tiles, CFrag{});
    for (int kk = 0; kk < p_steps; ++kk) {
      std::array<int, 32> at;
      for (int lane = 0; lane < 32; ++lane)
        at[lane] = mma::score_offset(kk * 16 + mma::ldm_at_row(lane), r0 + mma::ldm_at_col(lane), kTile);
      const Frag dsta = ldmatrix_x4(ds_tile, at, true), pta = ldmatrix_x4(p_tile, at, true);
      for (int pair = 0; pair < o_tiles / 2; ++pair) {
        std::array<int, 32> bt;
        for (int lane = 0; lane < 32; ++lane)
          bt[lane] = mma::smem_offset(kk * 16 + mma::ldm_v_row(lane), 2 * pair * 8 + mma::ldm_v_col(lane), head_dim);
        const Regs<4> bq = ldmatrix_x4(q, bt, true), bo = ldmatrix_x4(dout, bt, true);
        mma_16816(acc_k[2 * pair], dsta, b_pair(bq, 0));
        mma_16816(acc_k[2 * pair + 1], dsta, b_pair(bq, 1));
        mma_16816(acc_v[2 * pair], pta, b_pair(bo, 0));
        mma_16816(acc_v[2 * pair + 1], pta, b_pair(bo, 1));
      }
    }
    store_fragments_sim(acc_k, scale, r0, n, head_dim, k, dk, wk);
    store_fragments_sim(acc_v, 1.0f, r0, n, head_dim, v, dv, wv);
  }
  // compare
  double worst = 0;
  for (int i = 0; i < n; ++i)
    for (int d = 0; d < head_dim; ++d) {
      double want_q = 0, want_k = 0, want_v = 0;
      for (int j = 0; j < n; ++j) {
        want_q += dS[i * n + j] * tk[j * head_dim + d] * scale;
        want_k += dS[j * n + i] * tq[j * head_dim + d] * scale;
        want_v += P[j * n + i] * tdo[j * head_dim + d];
      }
      worst = std::fmax(worst, std::fabs(dq[i * head_dim + d] - want_q));
      worst = std::fmax(worst, std::fabs(dk[i * head_dim + d] - want_k));
      worst = std::fmax(worst, std::fabs(dv[i * head_dim + d] - want_v));
      expect(wq[i * head_dim + d] == 1 && wk[i * head_dim + d] == 1 && wv[i * head_dim + d] == 1,
             "dq, dk, dv elements written exactly once", head_dim, n, i * 1000 + d);
    }
  std::vector<int> owned(n * n, 0);
  for (int warp = 0; warp < 4; ++warp)
    for (int lane = 0; lane < 32; ++lane)
      for (int j = 0; j < n_tiles; ++j)
        for (int e = 0; e < 4; ++e) {
          const int row = 16 * warp + mma::c_row(lane, e), col = j * 8 + mma::c_col(lane, e);
          if (row < n && col < n) {
            worst = std::fmax(worst, std::fabs(dbias[warp][j][lane][e] - dS[row * n + col]));
            ++owned[row * n + col];
          } else {
            expect(dbias[warp][j][lane][e] == 0.0f, "d_bias past N is zero", head_dim, n, row * 100 + col);
          }
        }
  for (int e = 0; e < n * n; ++e) expect(owned[e] == 1, "each d_bias entry owned by one lane", head_dim, n, e);
  expect(worst < 2e-4, "window backward = softmax attention gradients", head_dim, n, static_cast<int>(1e6 * worst));
}

// Banks (4-byte words mod 32) of an access of `bytes` bytes at byte address a.
void add_banks(std::vector<int>& count, int64_t a, int bytes) {
  for (int w = 0; w < bytes / 4; ++w) ++count[((a / 4) + w) % 32];
}
int conflict_degree(const std::vector<int64_t>& addresses, int bytes) {
  std::vector<int> count(32, 0);
  for (int64_t a : addresses) add_banks(count, a, bytes);
  int worst = 0;
  for (int c : count) worst = std::max(worst, c);
  return worst;
}

void check_banks(int head_dim) {
  const int eb = 2;  // 16-bit elements
  // ldmatrix: each 8-lane phase (one 8 x 8 matrix) reads 8 rows of 16 bytes
  struct Use {
    const char* name;
    int (*row)(int);
    int (*col)(int);
    int rows, cols;  // tile origins step over these
  };
  const Use uses[] = {{"ldmatrix q", mma::ldm_a_row, mma::ldm_a_col, kTile, head_dim},
                      {"ldmatrix k", mma::ldm_kt_row, mma::ldm_kt_col, kTile, head_dim},
                      {"ldmatrix.trans v", mma::ldm_v_row, mma::ldm_v_col, kTile, head_dim}};
  for (const Use& use : uses)
    for (int r0 = 0; r0 < use.rows; r0 += 16)
      for (int c0 = 0; c0 < use.cols; c0 += 16)
        for (int phase = 0; phase < 4; ++phase) {
          std::vector<int64_t> addresses;
          for (int lane = 8 * phase; lane < 8 * phase + 8; ++lane)
            addresses.push_back(int64_t{eb} * mma::smem_offset(r0 + use.row(lane), c0 + use.col(lane), head_dim));
          expect(conflict_degree(addresses, 16) == 1, use.name, head_dim, r0, phase);
        }
  // the bias tile's 8-byte column pairs: 16 lanes per phase
  for (int r0 = 0; r0 < kTile; r0 += 16)
    for (int half = 0; half < 2; ++half)
      for (int j = 0; j < kTile / 8; ++j)
        for (int phase = 0; phase < 2; ++phase) {
          std::vector<int64_t> addresses;
          for (int lane = 16 * phase; lane < 16 * phase + 16; ++lane)
            addresses.push_back(4 * int64_t{mma::bias_offset(r0 + mma::c_row(lane, 2 * half),
                                                            j * 8 + mma::c_col(lane, 2 * half), kTile)});
          expect(conflict_degree(addresses, 8) == 1, "bias tile pairs", r0, j, phase);
        }
  // the backward's P/dS tiles: 4-byte stores of C fragments, ldmatrix.trans of their transposes
  for (int j = 0; j < kTile / 8; ++j)
    for (int half = 0; half < 2; ++half) {
      std::vector<int64_t> addresses;
      for (int lane = 0; lane < 32; ++lane)
        addresses.push_back(2 * int64_t{mma::score_offset(mma::c_row(lane, 2 * half), j * 8 + mma::c_col(lane, 2 * half),
                                                          kTile)});
      expect(conflict_degree(addresses, 4) == 1, "P/dS tile stores", j, half);
    }
  for (int i0 = 0; i0 < kTile; i0 += 16)
    for (int j0 = 0; j0 < kTile; j0 += 16)
      for (int phase = 0; phase < 4; ++phase) {
        std::vector<int64_t> addresses;
        for (int lane = 8 * phase; lane < 8 * phase + 8; ++lane)
          addresses.push_back(2 * int64_t{mma::score_offset(i0 + mma::ldm_at_row(lane), j0 + mma::ldm_at_col(lane), kTile)});
        expect(conflict_degree(addresses, 16) == 1, "ldmatrix.trans of P/dS", i0, j0, phase);
      }
  // staging stores: 4 bytes per lane, one wavefront for 32 lanes
  for (int j = 0; j < head_dim / 8; ++j)
    for (int half = 0; half < 2; ++half) {
      std::vector<int64_t> addresses;
      for (int lane = 0; lane < 32; ++lane)
        addresses.push_back(int64_t{eb} *
                            mma::smem_offset(mma::c_row(lane, 2 * half), j * 8 + mma::c_col(lane, 2 * half), head_dim));
      expect(conflict_degree(addresses, 4) == 1, "staging stores", head_dim, j, half);
    }
  // staging loads: 16 bytes per lane, 8 lanes per phase
  for (int first = 0; first < mma::out_units(head_dim); first += 8) {
    std::vector<int64_t> addresses;
    for (int unit = first; unit < first + 8; ++unit)
      addresses.push_back(int64_t{eb} * mma::smem_offset(mma::out_unit_row(unit, head_dim),
                                                         mma::out_unit_col(unit, head_dim), head_dim));
    expect(conflict_degree(addresses, 16) == 1, "staging 16-byte loads", head_dim, first);
  }
  // the gather's 16-byte stores (unit u of the block: token u / (D/8), unit u % (D/8)): reported, not required
  int worst = 0;
  for (int first = 0; first < kTile * head_dim / 8; first += 8) {
    std::vector<int64_t> addresses;
    for (int u = first; u < first + 8; ++u)
      addresses.push_back(int64_t{eb} * mma::smem_offset(u / (head_dim / 8), 8 * (u % (head_dim / 8)), head_dim));
    worst = std::max(worst, conflict_degree(addresses, 16));
  }
  std::printf("head_dim %d: ldmatrix and staging conflict-free; gather stores up to %d-way\n", head_dim, worst);
}

// flash_window.h against the shared maps: cells and origins of consecutive windows, a token's pixel and region from
// its packed offset, the windows per block.
void check_window_bookkeeping() {
  namespace maps = swin_kernels::maps;
  namespace flash = swin_kernels::cuda::flash;
  int cases = 0;
  for (int depth : {1, 3, 5})
    for (int height : {1, 5, 7, 14, 13})
      for (int width : {4, 7, 9, 15})
        for (int md : {1, 2})
          for (int mh : {1, 3, 7})
            for (int mw : {2, 4, 7})
              for (int shift : {0, 1})
                for (bool roll_first : {false, true}) {
                  if (depth == 1 && md != 1) continue;
                  if (mh * mw * md > kTile) continue;
                  const maps::WindowGrid g = maps::make_grid(depth, height, width, md, mh, mw, shift && md > 1 ? 1 : 0,
                                                             shift ? mh / 2 : 0, shift ? mw / 2 : 0, roll_first);
                  ++cases;
                  for (int first = 0; first < g.windows_per_image; first += 3) {
                    flash::WindowCell cell = flash::window_cell(g, first);
                    for (int w = first; w < std::min<int64_t>(first + 8, g.windows_per_image);
                         ++w, cell = flash::next_cell(g, cell)) {
                      const maps::WindowOrigin want = maps::window_origin(g, w), got = flash::cell_origin(g, cell);
                      expect(want.plane == got.plane && want.row == got.row && want.col == got.col,
                             "cell origin = maps::window_origin", cases, w);
                      for (int t = 0; t < g.tokens; ++t) {
                        const flash::TokenSlot slot =
                            flash::token_slot(g, got, flash::unpack_offset(flash::pack_offset(maps::token_offset(g, t))));
                        expect(slot.pixel == maps::token_pixel(g, w, t), "token_slot pixel = maps::token_pixel", cases, w, t);
                        expect(slot.region == maps::token_region(g, w, t), "token_slot region = maps::token_region", cases,
                               w, t);
                      }
                    }
                  }
                }
  for (int64_t batch : {1, 2, 128, 1000})
    for (int64_t windows : {1, 3, 4, 16, 64, 1024})
      for (int64_t heads : {1, 3, 24}) {
        const int32_t w = flash::windows_per_block(batch, windows, heads);
        expect(w >= 1 && w <= flash::kMaxWindowsPerBlock && (w == 1 || w <= windows), "windows per block range",
               static_cast<int>(batch), static_cast<int>(windows), w);
        expect(w == 1 || batch * heads * ((windows + w - 1) / w) >= flash::kMinBlocks, "enough blocks",
               static_cast<int>(batch), static_cast<int>(windows), w);
      }
  std::printf("window bookkeeping: %d geometries against the shared maps\n", cases);
}

void check_offsets_and_sizes() {
  // a map of 2^32+ elements: the offsets stay exact
  const int64_t pixel = 3'000'000'000LL, row = 3 * 1024;
  expect(mma::map_offset(pixel, row, 2, 1024, 31, 32, 24) == pixel * row + 2 * 1024 + 31 * 32 + 24,
         "map_offset is 64-bit");
  expect(mma::lse_offset(100'000'000LL, 32, 31, 256, 255) == (100'000'000LL * 32 + 31) * 256 + 255,
         "lse_offset is 64-bit");
  static_assert(sizeof(decltype(mma::map_offset(0, 0, 0, 0, 0, 0, 0))) == 8, "64-bit offsets");
  for (int d = 16; d <= 64; d += 16) {
    const int64_t tile = 2 * mma::smem_tile_elements(kTile, d);
    expect(tile % 128 == 0, "each padded tile keeps the next 128-byte aligned", d);
    expect((2 * mma::smem_pitch(d)) % 16 == 0 && ((2 * mma::smem_pitch(d)) / 16) % 2 == 1,
           "the pitch is an odd number of 16-byte units", d);
    expect(swin_kernels::cuda::flash_forward_smem_bytes(d) ==
               3 * tile + 4 * kTile * mma::bias_pitch(kTile) + kTile * 8 + kTile * 4,
           "flash smem", d);
    expect((3 * tile + 4 * kTile * mma::bias_pitch(kTile)) % 8 == 0, "the pixels after the tiles are 8-byte aligned", d);
    const int64_t scores = 2 * 2 * int64_t{kTile} * mma::score_pitch(kTile);
    expect(swin_kernels::cuda::flash_backward_smem_bytes(d) ==
               4 * tile + scores + 4 * kTile * mma::bias_pitch(kTile) + kTile * 8 + kTile * 4 + kTile * 4,
           "flash backward smem", d);
    expect((4 * tile + scores) % 16 == 0 && (4 * tile + scores + 4 * kTile * mma::bias_pitch(kTile)) % 8 == 0,
           "the backward's tiles keep their successors aligned", d);
    expect(mma::kRowsPerWarp * mma::smem_pitch(d) * 2 >= mma::out_units(d) * 16, "staging fits the warp's q rows", d);
  }
  using swin_kernels::cuda::KernelVariant;
  using swin_kernels::cuda::kernel_variant;
  expect(kernel_variant(nullptr) == KernelVariant::kVerified && kernel_variant("") == KernelVariant::kVerified &&
             kernel_variant("verified") == KernelVariant::kVerified && kernel_variant("flash") == KernelVariant::kFlash &&
             kernel_variant("Flash") == KernelVariant::kUnknown,
         "SWIN_KERNELS_CUDA_KERNELS values");
  expect(swin_kernels::cuda::flash_forward_supported(2, 49, 32) && !swin_kernels::cuda::flash_forward_supported(4, 49, 32),
         "flash forward: 16-bit types only");
  namespace maps = swin_kernels::maps;
  using swin_kernels::cuda::flash_backward_supported;
  using swin_kernels::cuda::flash_grid_supported;
  expect(flash_grid_supported(128, maps::make_grid(56, 56, 7, 3)) &&
             !flash_grid_supported(1, maps::make_grid(1LL << 17, 1LL << 17, 1, 0)) &&
             !flash_grid_supported(int64_t{65536} * 65536, maps::make_grid(56, 56, 7, 3)),
         "flash grids: windows of an image in 32 bits, images in gridDim.y x gridDim.z");
  expect(flash_backward_supported(2, maps::make_grid(56, 56, 7, 3), 32) &&
             !flash_backward_supported(2, maps::make_grid(57, 56, 7, 3), 32) &&
             flash_backward_supported(2, maps::make_grid(56, 56, 7, 7, 3, 3, true), 32) &&
             !flash_backward_supported(4, maps::make_grid(56, 56, 7, 3), 32),
         "flash backward: 16-bit maps without padding tokens");
}

}  // namespace

int main() {
  check_fragment_ownership();
  for (int d = 16; d <= 64; d += 16) {
    check_products(d);
    check_banks(d);
    for (int n : {1, 9, 16, 17, 36, 48, 49, 63, 64}) {
      check_window_forward(d, n, true, false);
      check_window_forward(d, n, n % 2 == 1, true);
      check_window_backward(d, n, false);
      check_window_backward(d, n, true);
    }
  }
  check_offsets_and_sizes();
  check_window_bookkeeping();
  if (failures) {
    std::printf("%d checks failed\n", failures);
    return 1;
  }
  std::printf("mma layout: all checks passed\n");
  return 0;
}
