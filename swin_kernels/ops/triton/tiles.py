"""Tile helpers shared by the attention kernels: token rows, matmuls, score blocks, row statistics of the
backward, dropout masks."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def constant(hi, lo, ty: tl.constexpr):
    """hi + lo in type ty: a host constant passed as two fp32 kernel arguments (configs.split_float)."""
    return tl.cast(hi, ty) + tl.cast(lo, ty)


@triton.jit
def load_token_rows(base_ptr, pad_ptr, row, real, padded, row_stride, col0, d, d_ok, HAS_PAD: tl.constexpr):
    """(tokens, BLOCK_D) tile of channels col0 + d of each token; padding tokens take the pad vector (else 0)."""
    x = tl.load(base_ptr + row[:, None] * row_stride + col0 + d[None, :], mask=real[:, None] & d_ok[None, :],
                other=0.0)
    if HAS_PAD:
        pad = tl.load(pad_ptr + col0 + d, mask=d_ok, other=0.0)
        x = tl.where(padded[:, None], pad[None, :], x)
    return x


@triton.jit
def load_token_cols(base_ptr, pad_ptr, row, real, padded, row_stride, col0, d, d_ok, HAS_PAD: tl.constexpr):
    """The transposed tile (BLOCK_D, tokens), read straight from memory (no register transpose)."""
    x = tl.load(base_ptr + row[None, :] * row_stride + col0 + d[:, None], mask=real[None, :] & d_ok[:, None],
                other=0.0)
    if HAS_PAD:
        pad = tl.load(pad_ptr + col0 + d, mask=d_ok, other=0.0)
        x = tl.where(padded[None, :], pad[:, None], x)
    return x


@triton.jit
def matmul(a, b, INPUT_PRECISION: tl.constexpr, DOT_UPCAST: tl.constexpr, acc=None):
    """a @ b (+ acc) with fp32 (fp64 for fp64) accumulation."""
    if DOT_UPCAST:
        out = tl.dot(a.to(tl.float32), b.to(tl.float32), acc=acc, input_precision="ieee")
    else:
        out = tl.dot(a, b, acc=acc, input_precision=INPUT_PRECISION)
    return out


@triton.jit
def score_block(a, b, rows, cols, table, qk_scale, PADDED: tl.constexpr, TRANSPOSED: tl.constexpr,
                INPUT_PRECISION: tl.constexpr, DOT_UPCAST: tl.constexpr):
    """Base-2 scores (q kᵀ + table)·scale·log2(e) of a block: (queries, keys), or (keys, queries) if TRANSPOSED.

    ``table`` points at the window class's (PADDED, PADDED) score table ((bias + shift mask) / scale, -inf pad
    keys). It is the dot's accumulator: loaded straight into the mma layout, with no layout conversion.
    """
    if TRANSPOSED:
        offsets = cols[None, :] * PADDED + rows[:, None]
    else:
        offsets = rows[:, None] * PADDED + cols[None, :]
    return matmul(a, b, INPUT_PRECISION, DOT_UPCAST, tl.load(table + offsets)) * qk_scale


@triton.jit
def fast_log2(x, APPROX: tl.constexpr):
    """log2 of fp32 x > 0 on the MUFU unit (lg2.approx: ~2^-22 relative error), else tl.log2 (fp64, interpreter)."""
    if APPROX:
        out = tl.inline_asm_elementwise("lg2.approx.f32 $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True,
                                        pack=1)
    else:
        out = tl.log2(x)
    return out


@triton.jit
def load_row_stats(dout_ptr, delta_ptr, lse_ptr, rows, real, queries, pair, channels, col0, d, d_ok,
                   N: tl.constexpr, PADDED: tl.constexpr):
    """(dO, D, lse) of a block of query tokens, what both backward kernels need per query row.

    dO: the (queries, BLOCK_D) tile at the tokens' places in (B, H, W, C), 0 for padding (cropped, no gradient);
    D = rowsum(dO ∘ O) (row_delta.py) and the saved base-2 log-sum-exp of window-head ``pair``, both in the lse's
    padded layout and (accumulator) type.
    """
    do = tl.load(dout_ptr + rows[:, None] * channels + col0 + d[None, :], mask=real[:, None] & d_ok[None, :],
                 other=0.0)
    stats = pair.to(tl.int64) * PADDED + queries
    delta = tl.load(delta_ptr + stats, mask=queries < N, other=0.0)
    lse = tl.load(lse_ptr + stats, mask=queries < N, other=0.0)
    return do, delta, lse


@triton.jit
def dropout_keep(seed, window_head, queries, keys, p_drop, N: tl.constexpr, TRANSPOSED: tl.constexpr):
    """Keep mask of attention element (i, j) of one window-head: Philox at counter (i·N + j, window_head).

    A (queries, keys) block, or (keys, queries) when TRANSPOSED; the forward and both backward passes agree.
    """
    if TRANSPOSED:
        c0 = (queries[None, :] * N + keys[:, None]).to(tl.uint32)
    else:
        c0 = (queries[:, None] * N + keys[None, :]).to(tl.uint32)
    zero = tl.zeros_like(c0)
    c1 = zero + window_head.to(tl.uint32)
    bits, _, _, _ = tl.random.philox(seed, c0, c1, zero, zero)
    return tl.random.uint_to_uniform_float(bits) >= p_drop
