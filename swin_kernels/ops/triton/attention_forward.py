"""Single-pass shifted-window attention forward.

A program takes BLOCK_M query rows of WINDOWS consecutive (window, head) pairs (heads vary fastest, so
neighbouring iterations read neighbouring channels of the same tokens). Per pair it loads the query rows and
then each key block straight from qkv (B, H, W, 3C) through the window index map, adds the score table of the
window's class (bias + shift mask, score_table.py), runs an online softmax in fp32 (fp64 for fp64) in base 2,
and stores O at the tokens' own places in out (B, H, W, C); padding tokens are not stored. The row
log-sum-exp (base 2) is kept for the backward.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import triton
import triton.language as tl

from ..outputs import new_output
from . import configs
from .index_map import kernel_geometry, window_class, window_token_map
from .score_table import score_table
from .tiles import dropout_keep, load_token_cols, load_token_rows, matmul, score_block


@triton.jit
def window_attention_fwd_kernel(
    qkv_ptr, pad_ptr, table_ptr, out_ptr, lse_ptr, params_ptr, seed, p_drop,
    total_pairs, num_heads, height, width, padded_h, padded_w, shift, windows_per_row, windows_per_image,
    WINDOW: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
    NUM_KEY_BLOCKS: tl.constexpr, HAS_PAD: tl.constexpr, HAS_SHIFT: tl.constexpr, DROPOUT: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, DOT_UPCAST: tl.constexpr, BLOCK_M: tl.constexpr, WINDOWS: tl.constexpr,
):
    N: tl.constexpr = WINDOW * WINDOW
    PADDED: tl.constexpr = NUM_KEY_BLOCKS * BLOCK_N
    channels = num_heads * HEAD_DIM
    acc_ty = lse_ptr.dtype.element_ty
    qk_scale = tl.load(params_ptr)        # scale·log2(e)
    keep_scale = tl.load(params_ptr + 2)  # 1 / (1 - p)
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    rows = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    for step in range(WINDOWS):
        pair = tl.program_id(0) * WINDOWS + step
        live = pair < total_pairs
        window = pair // num_heads
        head = pair % num_heads
        table = table_ptr + (window_class(window, windows_per_row, windows_per_image, HAS_SHIFT) * num_heads
                             + head) * (PADDED * PADDED)
        q_row, q_real, q_pad = window_token_map(
            rows, window, height, width, padded_h, padded_w, shift, windows_per_row, windows_per_image, WINDOW)
        q_real = q_real & live
        q = load_token_rows(qkv_ptr, pad_ptr, q_row, q_real, q_pad, 3 * channels, head * HEAD_DIM, d, d_ok, HAS_PAD)
        m = tl.full([BLOCK_M], float("-inf"), acc_ty)
        l = tl.zeros([BLOCK_M], acc_ty)
        acc = tl.zeros([BLOCK_M, BLOCK_D], acc_ty)
        for kb in tl.static_range(NUM_KEY_BLOCKS):
            cols = kb * BLOCK_N + tl.arange(0, BLOCK_N)
            k_row, k_real, k_pad = window_token_map(
                cols, window, height, width, padded_h, padded_w, shift, windows_per_row, windows_per_image, WINDOW)
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
        o = acc / l[:, None]
        tl.store(out_ptr + q_row[:, None] * channels + head * HEAD_DIM + d[None, :], o.to(out_ptr.dtype.element_ty),
                 mask=q_real[:, None] & d_ok[None, :])
        tl.store(lse_ptr + pair.to(tl.int64) * PADDED + rows, m + tl.log2(l), mask=(rows < N) & live)


@lru_cache(maxsize=64)
def attention_params(scale: float, dropout_p: float, acc_dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[scale·log2 e, log2 e, 1/(1-p), scale] in the accumulator dtype (scalar kernel arguments would be fp32).

    Cached (read-only), so a training step does not wait on a host-to-device copy.
    """
    log2e = 1.4426950408889634
    keep_scale = 1.0 / (1.0 - dropout_p)
    return torch.tensor([scale * log2e, log2e, keep_scale, scale], dtype=acc_dtype).to(device)


def window_attention_forward(qkv, pad_qkv, bias, num_heads, window, shift, scale, dropout_p, seed, plan):
    """(out (B, H, W, C), lse, table): lse (B·nW·heads, Np) base-2 log-sum-exp, table the score table."""
    batch, height, width, c3 = qkv.shape
    head_dim = c3 // (3 * num_heads)
    geo = kernel_geometry(height, width, window, shift)
    total_pairs = batch * geo[-1] * num_heads
    configs.check_int32_indices(batch * num_heads, geo[2], geo[3])
    acc_dtype = configs.accumulator_dtype(qkv.dtype)
    out = new_output((*qkv.shape[:3], c3 // 3), qkv)
    lse = torch.empty((total_pairs, plan.padded), dtype=acc_dtype, device=qkv.device)
    params = attention_params(scale, dropout_p, acc_dtype, qkv.device)
    table = score_table(bias, params, num_heads, window, shift, plan)

    def grid(meta):
        return triton.cdiv(total_pairs, meta["WINDOWS"]), triton.cdiv(plan.tokens, meta["BLOCK_M"])

    configs.launch(
        window_attention_fwd_kernel, configs.forward_configs(plan), ["total_pairs", "WINDOW", "HEAD_DIM", "DROPOUT"],
        grid,
        qkv, qkv if pad_qkv is None else pad_qkv, table, out, lse, params, seed, dropout_p,
        total_pairs, num_heads, *geo,
        WINDOW=window, HEAD_DIM=head_dim, BLOCK_D=plan.block_d, BLOCK_N=plan.block,
        NUM_KEY_BLOCKS=plan.num_blocks, HAS_PAD=pad_qkv is not None, HAS_SHIFT=shift > 0, DROPOUT=dropout_p > 0.0,
        INPUT_PRECISION=plan.input_precision, DOT_UPCAST=configs.dot_upcast(qkv.dtype),
    )
    return out, lse, table
