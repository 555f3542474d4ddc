"""Single-pass shifted-window attention forward.

A program takes BLOCK_M query rows of WINDOWS consecutive (window, head) pairs (heads vary fastest, so
neighbouring iterations read neighbouring channels of the same tokens). Per pair it loads the query rows and
then each key block straight from qkv (B, [D,] H, W, 3C) through the window index map, adds the score table of the
window's class (bias + shift mask, score_table.py) as the dot's accumulator, runs an online softmax in fp32
(fp64 for fp64) in base 2, and stores O at the tokens' own places in out (B, [D,] H, W, C); padding tokens are
not stored. The row log-sum-exp (base 2) is kept for the backward. HAS_PAD is set only when the window grid
really has padding tokens (the input is not a multiple of the window), so the pad-select code is compiled out
otherwise. Dropout draws its Philox seed from a device tensor (taken
from torch's generator of that device by the caller), so no host synchronisation happens and CUDA graphs work.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..outputs import new_output
from . import configs
from .index_map import depth_geometry, has_padding, kernel_geometry, window_class, window_sizes, window_token_map
from .score_table import score_table
from .tiles import constant, dropout_keep, fast_log2, load_token_cols, load_token_rows, matmul, score_block


@triton.jit
def window_attention_fwd_kernel(
    qkv_ptr, pad_ptr, table_ptr, out_ptr, lse_ptr, seed_ptr, qk_scale_hi, qk_scale_lo, keep_hi, keep_lo, p_drop,
    total_pairs, num_heads, height, width, roll_len_h, roll_len_w, roll_h, roll_w, windows_per_row, windows_per_image,
    depth, roll_len_d, roll_d, windows_per_plane,
    WINDOW_D: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, NUM_KEY_BLOCKS: tl.constexpr, HAS_PAD: tl.constexpr,
    HAS_SHIFT: tl.constexpr, DROPOUT: tl.constexpr, INPUT_PRECISION: tl.constexpr, DOT_UPCAST: tl.constexpr,
    FAST_LOG2: tl.constexpr, BLOCK_M: tl.constexpr, WINDOWS: tl.constexpr,
):
    N: tl.constexpr = WINDOW_D * WINDOW_H * WINDOW_W
    PADDED: tl.constexpr = NUM_KEY_BLOCKS * BLOCK_N
    channels = num_heads * HEAD_DIM
    acc_ty = lse_ptr.dtype.element_ty
    qk_scale = constant(qk_scale_hi, qk_scale_lo, acc_ty)  # scale·log2(e)
    keep_scale = constant(keep_hi, keep_lo, acc_ty)        # 1 / (1 - p)
    if DROPOUT:
        seed = tl.load(seed_ptr)
    else:
        seed = 0
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    for step in range(WINDOWS):
        pair = tl.program_id(0) * WINDOWS + step
        live = pair < total_pairs
        window = pair // num_heads
        head = pair % num_heads
        table = table_ptr + (window_class(window, windows_per_row, windows_per_image, windows_per_plane, HAS_SHIFT,
                                          WINDOW_D) * num_heads + head) * (PADDED * PADDED)
        q_row, q_real, q_pad = window_token_map(
            rows, window, height, width, roll_len_h, roll_len_w, roll_h, roll_w, windows_per_row,
            windows_per_image, depth, roll_len_d, roll_d, windows_per_plane, WINDOW_D, WINDOW_H, WINDOW_W)
        q_real = q_real & live
        q = load_token_rows(qkv_ptr, pad_ptr, q_row, q_real, q_pad, 3 * channels, head * HEAD_DIM, d, d_ok, HAS_PAD)
        m = tl.full([BLOCK_M], float("-inf"), acc_ty)
        l = tl.zeros([BLOCK_M], acc_ty)
        acc = tl.zeros([BLOCK_M, BLOCK_D], acc_ty)
        for kb in range(NUM_KEY_BLOCKS):
            cols = kb * BLOCK_N + tl.arange(0, BLOCK_N)
            k_row, k_real, k_pad = window_token_map(
                cols, window, height, width, roll_len_h, roll_len_w, roll_h, roll_w, windows_per_row,
                windows_per_image, depth, roll_len_d, roll_d, windows_per_plane, WINDOW_D, WINDOW_H, WINDOW_W)
            k_real = k_real & live
            kt = load_token_cols(qkv_ptr, pad_ptr, k_row, k_real, k_pad, 3 * channels, channels + head * HEAD_DIM,
                                 d, d_ok, HAS_PAD)
            v = load_token_rows(qkv_ptr, pad_ptr, k_row, k_real, k_pad, 3 * channels, 2 * channels + head * HEAD_DIM,
                                d, d_ok, HAS_PAD)
            s = score_block(q, kt, rows, cols, table, qk_scale, PADDED, False, INPUT_PRECISION, DOT_UPCAST)
            m_new = tl.maximum(m, tl.max(s, 1))
            alpha = tl.exp2(m - m_new)
            p = tl.exp2(s - m_new[:, None])
            l = l * alpha + tl.sum(p, 1)
            if DROPOUT:
                keep = dropout_keep(seed, pair, rows, cols, p_drop, N, False)
                p = tl.where(keep, p * keep_scale, 0.0)
            acc = acc * alpha[:, None] + matmul(p.to(v.dtype), v, INPUT_PRECISION, DOT_UPCAST)
            m = m_new
        o = acc * (1.0 / l)[:, None]
        tl.store(out_ptr + q_row[:, None] * channels + head * HEAD_DIM + d[None, :], o.to(out_ptr.dtype.element_ty),
                 mask=q_real[:, None] & d_ok[None, :])
        # every row of the padded layout is written (0 past the window's N tokens, which nothing reads)
        tl.store(lse_ptr + pair.to(tl.int64) * PADDED + rows, tl.where(rows < N, m + fast_log2(l, FAST_LOG2), 0.0),
                 mask=(rows < PADDED) & live)


def scalar_args(scale: float, dropout_p: float) -> tuple[float, ...]:
    """(qk_scale hi, lo, scale hi, lo, keep hi, lo): scale·log2(e), scale and 1/(1-p) as fp32 pairs (configs.split_float)."""
    return (*configs.split_float(scale * configs.LOG2E), *configs.split_float(scale),
            *configs.split_float(1.0 / (1.0 - dropout_p)))


def lse_shape(batch: int, geometry, num_heads: int, plan) -> tuple[int, int]:
    return batch * geometry.num_windows * num_heads, plan.padded


@dataclass(frozen=True)
class ForwardLaunch:
    """Everything of a forward launch but its tensors: the same for every call of one geometry, plan and dtype."""

    grid: tuple[int, int]
    scalars: tuple  # the kernel's run-time arguments after its six tensors
    constants: dict  # constexprs and launch options (passed as **kwargs: never mutated)
    lse_shape: tuple[int, int]
    acc_dtype: torch.dtype


@functools.lru_cache(maxsize=512)
def forward_launch(geometry, batch: int, c3: int, num_heads: int, dtype: torch.dtype, has_pad: bool,
                   dropout: bool, scale: float, dropout_p: float, plan) -> ForwardLaunch:
    """The launch of one kind of call, worked out once (checks included: an invalid call raises, nothing is kept).
    Per call the launcher then allocates the outputs and launches; its host time is what late Swin stages and small
    batches wait for on a GPU (benchmarks/host_overhead.py)."""
    g = geometry
    total_pairs = batch * g.num_windows * num_heads
    configs.check_int32_indices(batch * num_heads, *g.padded_sizes)
    configs.check_scale(scale)
    acc_dtype = configs.accumulator_dtype(dtype)
    config = plan.forward_config()
    meta = config.kwargs
    qk_hi, qk_lo, _, _, keep_hi, keep_lo = scalar_args(scale, dropout_p)
    # every row of the padded layout gets a program (its lse row is written even past the window's N tokens)
    grid = (triton.cdiv(total_pairs, meta["WINDOWS"]), plan.padded // meta["BLOCK_M"])
    constants = dict(
        **window_sizes(g), HEAD_DIM=c3 // (3 * num_heads), BLOCK_D=plan.block_d,
        NUM_KEY_BLOCKS=plan.padded // meta["BLOCK_N"], HAS_PAD=has_pad and has_padding(g), HAS_SHIFT=g.shifted,
        DROPOUT=dropout, INPUT_PRECISION=plan.input_precision, DOT_UPCAST=configs.dot_upcast(dtype),
        FAST_LOG2=configs.fast_log2(acc_dtype), **meta, **config.launch_options())
    scalars = (qk_hi, qk_lo, keep_hi, keep_lo, dropout_p, total_pairs, num_heads, *kernel_geometry(g),
               *depth_geometry(g))
    return ForwardLaunch(grid, scalars, constants, lse_shape(batch, g, num_heads, plan), acc_dtype)


def window_attention_forward(qkv, pad_qkv, bias, seed, num_heads, geometry, scale, dropout_p, plan):
    """(out (B, [D,] H, W, C), lse, table): lse (B·nW·heads, Np) base-2 log-sum-exp, table the score table."""
    c3 = qkv.shape[-1]
    launch = forward_launch(geometry, qkv.shape[0], c3, num_heads, qkv.dtype, pad_qkv is not None,
                            dropout_p > 0.0, scale, dropout_p, plan)
    out = new_output((*qkv.shape[:-1], c3 // 3), qkv)
    lse = torch.empty(launch.lse_shape, dtype=launch.acc_dtype, device=qkv.device)
    table = score_table(bias, launch.acc_dtype, num_heads, geometry, scale, plan, qkv.device)
    window_attention_fwd_kernel[launch.grid](
        qkv, qkv if pad_qkv is None else pad_qkv, table, out, lse, lse if seed is None else seed, *launch.scalars,
        **launch.constants)
    return out, lse, table
