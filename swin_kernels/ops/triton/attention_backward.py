"""Backward of the single-pass window attention, flash style, with deterministic d_bias / d_pad_qkv sums.

Both kernels recompute P = exp2(S - lse) from q, k and the saved log-sum-exp, with D = rowsum(dO ∘ O) computed
ahead of them (row_delta.py):
    dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP - D),  dK = dSᵀ Q·scale,  dQ = dS K·scale,  d_bias = Σ_windows dS
(dropout: P -> P∘Z/(1-p) in dV and dP -> dP∘Z/(1-p); D already holds the dropped P). The dK/dV kernel walks
keys, the dQ/d_bias kernel queries: one fused kernel holding both needs ~255 registers and spills on sm_80.
Each program (slot, head) walks a fixed, contiguous run of windows. dQ, dK, dV are stored into dqkv
(B, [D,] H, W, 3C) at each real token's place, once each (the windows tile the input). Padding tokens' dK, dV are
summed per program (their dQ is 0: their output is cropped, so their dO is 0), d_bias per program in window order
(in registers, or in the program's own slot in memory for multi-block windows); slot_sums.py then adds the slots in
order. The two kernels take their own slots (configs.backward_slots): the dQ kernel's d_bias slots, (heads, N, N)
partial sums each, stop at about configs.DQ_PROGRAMS programs, so a few windows of many heads (late Swin stages)
do not write one partial sum per window; the dK/dV kernel's, only the pad vector's partial sums, run shorter.
Beyond the maps (windows of more than configs.MAP_TOKENS tokens, 3-D windows) few d_bias slots fit their
partial-sum memory, so each program takes one block of its windows (SPLIT_BLOCKS, grid axis 2).
No atomics: the same bits on every run, whatever the launch configuration.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..outputs import new_output
from . import configs
from .attention_forward import scalar_args
from .index_map import depth_geometry, has_padding, kernel_geometry, window_class, window_sizes, window_token_map
from .row_delta import row_delta
from .slot_sums import sum_slots
from .tiles import constant, dropout_keep, load_row_stats, load_token_cols, load_token_rows, matmul, score_block


@triton.jit
def _add_to_chunk(acc0, acc1, acc2, acc3, x, chunk):
    """acc<chunk> += x (chunk may be a run-time loop index)."""
    if chunk == 0:
        acc0 += x
    elif chunk == 1:
        acc1 += x
    elif chunk == 2:
        acc2 += x
    else:
        acc3 += x
    return acc0, acc1, acc2, acc3


@triton.jit
def window_attention_dkdv_kernel(
    qkv_ptr, pad_ptr, table_ptr, delta_ptr, dout_ptr, lse_ptr, seed_ptr, dqkv_ptr, dpad_part_ptr,
    qk_scale_hi, qk_scale_lo, scale_hi, scale_lo, keep_hi, keep_lo, p_drop,
    total_windows, windows_per_slot, num_heads, height, width, roll_len_h, roll_len_w, roll_h, roll_w,
    windows_per_row, windows_per_image, sub_steps, depth, roll_len_d, roll_d, windows_per_plane,
    WINDOW_D: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK: tl.constexpr,
    NUM_BLOCKS: tl.constexpr, SUB: tl.constexpr, HAS_PAD: tl.constexpr, HAS_SHIFT: tl.constexpr,
    NEED_DPAD: tl.constexpr, DROPOUT: tl.constexpr, INPUT_PRECISION: tl.constexpr, DOT_UPCAST: tl.constexpr,
    SPLIT_BLOCKS: tl.constexpr,
):
    """dK, dV of BLOCK keys at a time, against SUB queries per step, in the transposed (key, query) orientation.

    The keys are the mma's A operand (split over warps); the narrow query side, its B operand, is held whole
    by every warp, so keeping it narrow keeps registers low. ``sub_steps`` = ceil(N / SUB) at run time (a
    rolled loop: unrolled steps would all be hoisted into registers at once); the padded layout's query rows past
    them hold no token (dO and D are 0 there): they would add nothing. SPLIT_BLOCKS: the program takes only
    key block program_id(2) of its windows, with its own d_pad partial sum (slot·NUM_BLOCKS + block).
    """
    N: tl.constexpr = WINDOW_D * WINDOW_H * WINDOW_W
    PADDED: tl.constexpr = NUM_BLOCKS * BLOCK
    slot = tl.program_id(0)
    head = tl.program_id(1)
    first_block = tl.program_id(2) if SPLIT_BLOCKS else 0
    channels = num_heads * HEAD_DIM
    acc_ty = lse_ptr.dtype.element_ty
    qk_scale = constant(qk_scale_hi, qk_scale_lo, acc_ty)  # scale·log2(e)
    scale = constant(scale_hi, scale_lo, acc_ty)
    keep_scale = constant(keep_hi, keep_lo, acc_ty)  # 1 / (1 - p)
    if DROPOUT:
        seed = tl.load(seed_ptr)
    else:
        seed = 0
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    q_col0 = head * HEAD_DIM
    k_col0 = channels + head * HEAD_DIM
    first_window = slot * windows_per_slot
    last_window = tl.minimum(first_window + windows_per_slot, total_windows)
    dpad_k = tl.zeros([BLOCK_D], acc_ty)
    dpad_v = tl.zeros([BLOCK_D], acc_ty)
    for window in range(first_window, last_window):
        pair = window * num_heads + head
        table = table_ptr + (window_class(window, windows_per_row, windows_per_image, windows_per_plane, HAS_SHIFT,
                                          WINDOW_D) * num_heads + head) * (PADDED * PADDED)
        for block in range(1 if SPLIT_BLOCKS else NUM_BLOCKS):
            keys = (first_block + block) * BLOCK + tl.arange(0, BLOCK)
            k_row, k_real, k_pad = window_token_map(
                keys, window, height, width, roll_len_h, roll_len_w, roll_h, roll_w, windows_per_row,
                windows_per_image, depth, roll_len_d, roll_d, windows_per_plane, WINDOW_D, WINDOW_H, WINDOW_W)
            k = load_token_rows(qkv_ptr, pad_ptr, k_row, k_real, k_pad, 3 * channels, k_col0, d, d_ok, HAS_PAD)
            v = load_token_rows(qkv_ptr, pad_ptr, k_row, k_real, k_pad, 3 * channels, k_col0 + channels, d, d_ok,
                                HAS_PAD)
            dk = tl.zeros([BLOCK, BLOCK_D], acc_ty)
            dv = tl.zeros([BLOCK, BLOCK_D], acc_ty)
            for step in range(sub_steps):
                queries = step * SUB + tl.arange(0, SUB)
                q_row, q_real, q_pad = window_token_map(
                    queries, window, height, width, roll_len_h, roll_len_w, roll_h, roll_w, windows_per_row,
                    windows_per_image, depth, roll_len_d, roll_d, windows_per_plane, WINDOW_D, WINDOW_H, WINDOW_W)
                qt = load_token_cols(qkv_ptr, pad_ptr, q_row, q_real, q_pad, 3 * channels, q_col0, d, d_ok, HAS_PAD)
                do, delta, lse = load_row_stats(dout_ptr, delta_ptr, lse_ptr, q_row, q_real, queries, pair, channels,
                                                q_col0, d, d_ok, N, PADDED)
                st = score_block(k, qt, keys, queries, table, qk_scale, PADDED, True, INPUT_PRECISION, DOT_UPCAST)
                pt = tl.exp2(st - lse[None, :])
                dpt = matmul(v, tl.trans(do), INPUT_PRECISION, DOT_UPCAST)
                if DROPOUT:
                    keep = dropout_keep(seed, pair, queries, keys, p_drop, N, True)
                    dv += matmul(tl.where(keep, pt * keep_scale, 0.0).to(do.dtype), do, INPUT_PRECISION, DOT_UPCAST)
                    dpt = tl.where(keep, dpt * keep_scale, 0.0)
                else:
                    dv += matmul(pt.to(do.dtype), do, INPUT_PRECISION, DOT_UPCAST)
                dst = pt * (dpt - delta[None, :])
                dk += matmul(dst.to(qt.dtype), tl.trans(qt), INPUT_PRECISION, DOT_UPCAST)
            dk = dk * scale
            k_offsets = k_row[:, None] * (3 * channels) + k_col0 + d[None, :]
            k_mask = k_real[:, None] & d_ok[None, :]
            tl.store(dqkv_ptr + k_offsets, dk.to(dqkv_ptr.dtype.element_ty), mask=k_mask)
            tl.store(dqkv_ptr + k_offsets + channels, dv.to(dqkv_ptr.dtype.element_ty), mask=k_mask)
            if NEED_DPAD:
                dpad_k += tl.sum(tl.where(k_pad[:, None], dk, 0.0), 0)
                dpad_v += tl.sum(tl.where(k_pad[:, None], dv, 0.0), 0)
    if NEED_DPAD:
        partial = slot * NUM_BLOCKS + first_block if SPLIT_BLOCKS else slot
        dpad = dpad_part_ptr + (partial.to(tl.int64) * num_heads + head) * (2 * BLOCK_D) + d
        tl.store(dpad, dpad_k)
        tl.store(dpad + BLOCK_D, dpad_v)


@triton.jit
def window_attention_dq_kernel(
    qkv_ptr, pad_ptr, table_ptr, delta_ptr, dout_ptr, lse_ptr, seed_ptr, dqkv_ptr, dbias_part_ptr,
    qk_scale_hi, qk_scale_lo, scale_hi, scale_lo, keep_hi, keep_lo, p_drop,
    total_windows, windows_per_slot, num_heads, height, width, roll_len_h, roll_len_w, roll_h, roll_w,
    windows_per_row, windows_per_image, sub_steps, depth, roll_len_d, roll_d, windows_per_plane,
    WINDOW_D: tl.constexpr, WINDOW_H: tl.constexpr, WINDOW_W: tl.constexpr, HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK: tl.constexpr,
    NUM_BLOCKS: tl.constexpr, SUB: tl.constexpr, HAS_PAD: tl.constexpr, HAS_SHIFT: tl.constexpr,
    NEED_DBIAS: tl.constexpr, DROPOUT: tl.constexpr, INPUT_PRECISION: tl.constexpr, DOT_UPCAST: tl.constexpr,
    SPLIT_BLOCKS: tl.constexpr, SLOT_N: tl.constexpr,
):
    """dQ of BLOCK queries at a time against SUB keys per step, and d_bias = Σ_windows dS in window order.
    ``sub_steps`` = ceil(N / SUB): the padded layout's key columns past them hold no token (P is 0 there).

    One-block windows keep d_bias in up to 4 register chunks of (BLOCK, SUB), stored once per program into its
    (N, N) slot (the padded rows and columns are left out); larger windows add into this program's own
    (PADDED, PADDED) slot in memory, which no other program touches (unmasked: masks there cost the multi-block
    kernels registers). SLOT_N: the slot's row length, N or PADDED (AttentionPlan.dbias_slot_tokens).
    SPLIT_BLOCKS: the program takes only query block program_id(2) of its windows, so only those rows of the slot.
    """
    N: tl.constexpr = WINDOW_D * WINDOW_H * WINDOW_W
    PADDED: tl.constexpr = NUM_BLOCKS * BLOCK
    DBIAS_IN_REGISTERS: tl.constexpr = NUM_BLOCKS == 1 and PADDED // SUB <= 4
    slot = tl.program_id(0)
    head = tl.program_id(1)
    first_block = tl.program_id(2) if SPLIT_BLOCKS else 0
    channels = num_heads * HEAD_DIM
    acc_ty = lse_ptr.dtype.element_ty
    qk_scale = constant(qk_scale_hi, qk_scale_lo, acc_ty)  # scale·log2(e)
    scale = constant(scale_hi, scale_lo, acc_ty)
    keep_scale = constant(keep_hi, keep_lo, acc_ty)  # 1 / (1 - p)
    if DROPOUT:
        seed = tl.load(seed_ptr)
    else:
        seed = 0
    d = tl.arange(0, BLOCK_D)
    d_ok = d < HEAD_DIM
    q_col0 = head * HEAD_DIM
    k_col0 = channels + head * HEAD_DIM
    first_window = slot * windows_per_slot
    last_window = tl.minimum(first_window + windows_per_slot, total_windows)
    dbias_part = dbias_part_ptr + (slot.to(tl.int64) * num_heads + head) * (SLOT_N * SLOT_N)
    dbias0 = tl.zeros([BLOCK, SUB], acc_ty)
    dbias1 = tl.zeros([BLOCK, SUB], acc_ty)
    dbias2 = tl.zeros([BLOCK, SUB], acc_ty)
    dbias3 = tl.zeros([BLOCK, SUB], acc_ty)
    for window in range(first_window, last_window):
        pair = window * num_heads + head
        table = table_ptr + (window_class(window, windows_per_row, windows_per_image, windows_per_plane, HAS_SHIFT,
                                          WINDOW_D) * num_heads + head) * (PADDED * PADDED)
        for block in range(1 if SPLIT_BLOCKS else NUM_BLOCKS):
            queries = (first_block + block) * BLOCK + tl.arange(0, BLOCK)
            q_row, q_real, q_pad = window_token_map(
                queries, window, height, width, roll_len_h, roll_len_w, roll_h, roll_w, windows_per_row,
                windows_per_image, depth, roll_len_d, roll_d, windows_per_plane, WINDOW_D, WINDOW_H, WINDOW_W)
            q = load_token_rows(qkv_ptr, pad_ptr, q_row, q_real, q_pad, 3 * channels, q_col0, d, d_ok, HAS_PAD)
            do, delta, lse = load_row_stats(dout_ptr, delta_ptr, lse_ptr, q_row, q_real, queries, pair, channels,
                                            q_col0, d, d_ok, N, PADDED)
            dq = tl.zeros([BLOCK, BLOCK_D], acc_ty)
            for step in range(sub_steps):
                keys = step * SUB + tl.arange(0, SUB)
                k_row, k_real, k_pad = window_token_map(
                    keys, window, height, width, roll_len_h, roll_len_w, roll_h, roll_w, windows_per_row,
                windows_per_image, depth, roll_len_d, roll_d, windows_per_plane, WINDOW_D, WINDOW_H, WINDOW_W)
                kt = load_token_cols(qkv_ptr, pad_ptr, k_row, k_real, k_pad, 3 * channels, k_col0, d, d_ok, HAS_PAD)
                vt = load_token_cols(qkv_ptr, pad_ptr, k_row, k_real, k_pad, 3 * channels, k_col0 + channels, d,
                                     d_ok, HAS_PAD)
                s = score_block(q, kt, queries, keys, table, qk_scale, PADDED, False, INPUT_PRECISION, DOT_UPCAST)
                p = tl.exp2(s - lse[:, None])
                dp = matmul(do, vt, INPUT_PRECISION, DOT_UPCAST)
                if DROPOUT:
                    keep = dropout_keep(seed, pair, queries, keys, p_drop, N, False)
                    dp = tl.where(keep, dp * keep_scale, 0.0)
                ds = p * (dp - delta[:, None])
                dq += matmul(ds.to(kt.dtype), tl.trans(kt), INPUT_PRECISION, DOT_UPCAST)
                if NEED_DBIAS:
                    if DBIAS_IN_REGISTERS:
                        dbias0, dbias1, dbias2, dbias3 = _add_to_chunk(dbias0, dbias1, dbias2, dbias3, ds, step)
                    else:
                        ptrs = dbias_part + queries[:, None] * SLOT_N + keys[None, :]
                        previous = tl.load(ptrs, mask=(window > first_window) & (queries[:, None] >= 0), other=0.0)
                        tl.store(ptrs, previous + ds)
            tl.store(dqkv_ptr + q_row[:, None] * (3 * channels) + q_col0 + d[None, :],
                     (dq * scale).to(dqkv_ptr.dtype.element_ty), mask=q_real[:, None] & d_ok[None, :])
        if NEED_DBIAS and not DBIAS_IN_REGISTERS:
            tl.debug_barrier()  # the next window's read-modify-write of the slot sees this one's stores
    if NEED_DBIAS and DBIAS_IN_REGISTERS:
        rows = tl.arange(0, BLOCK)[:, None]
        cols = tl.arange(0, SUB)[None, :]
        chunk = dbias_part + rows * SLOT_N + cols
        tl.store(chunk, dbias0, mask=(rows < N) & (cols < N))
        if PADDED // SUB > 1:
            tl.store(chunk + SUB, dbias1, mask=(rows < N) & (cols + SUB < N))
        if PADDED // SUB > 2:
            tl.store(chunk + 2 * SUB, dbias2, mask=(rows < N) & (cols + 2 * SUB < N))
        if PADDED // SUB > 3:
            tl.store(chunk + 3 * SUB, dbias3, mask=(rows < N) & (cols + 3 * SUB < N))


def window_attention_backward(dout, qkv, pad_qkv, bias, out, lse, table, seed, num_heads, geometry, scale, dropout_p,
                              plan, need_dpad: bool, need_dbias: bool):
    """(dqkv, d_pad_qkv or None, d_bias or None); ``plan`` is the forward's."""
    g = geometry
    batch, c3 = qkv.shape[0], qkv.shape[-1]
    channels = c3 // 3
    head_dim = channels // num_heads
    total_windows = batch * g.num_windows
    acc_dtype = configs.accumulator_dtype(qkv.dtype)
    slots = {kernel: configs.backward_slots(total_windows, num_heads, plan, acc_dtype, kernel)
             for kernel in ("dkdv", "dq")}  # (programs, windows per program)
    need_dpad = need_dpad and pad_qkv is not None
    pad_tokens = pad_qkv is not None and has_padding(g)  # else d_pad_qkv is 0: no window reads the pad vector
    need_dbias = need_dbias and bias is not None
    dqkv = new_output(qkv.shape, qkv)
    slot_n = plan.dbias_slot_tokens
    dbias_part = (torch.empty((slots["dq"][0], num_heads, slot_n, slot_n), dtype=acc_dtype,
                              device=qkv.device) if need_dbias else lse)
    dpad_slots = slots["dkdv"][0] * plan.split_blocks("dkdv")
    dpad_part = (torch.empty((dpad_slots, num_heads, 2, plan.block_d), dtype=acc_dtype, device=qkv.device)
                 if need_dpad and pad_tokens else lse)
    scalars = (*scalar_args(scale, dropout_p), dropout_p, total_windows)
    meta = dict(**window_sizes(g), HEAD_DIM=head_dim, BLOCK_D=plan.block_d,
                HAS_PAD=pad_tokens, HAS_SHIFT=g.shifted, DROPOUT=dropout_p > 0.0,
                INPUT_PRECISION=plan.input_precision, DOT_UPCAST=configs.dot_upcast(qkv.dtype))
    pad = qkv if pad_qkv is None else pad_qkv
    seed = lse if seed is None else seed

    def launch(kernel, which: str, partial: torch.Tensor, **flag) -> None:
        config = plan.backward_config(which)
        block, sub = config.kwargs["BLOCK"], config.kwargs["SUB"]
        split = plan.split_blocks(which)
        programs, per_slot = slots[which]
        grid = (programs, num_heads) if split == 1 else (programs, num_heads, split)
        kernel[grid](qkv, pad, table, delta, dout, lse, seed, dqkv, partial, *scalars, per_slot, num_heads,
                     *kernel_geometry(g), triton.cdiv(plan.tokens, sub), *depth_geometry(g),
                     NUM_BLOCKS=plan.padded // block,
                     **config.kwargs, **flag, **meta, SPLIT_BLOCKS=split > 1, **config.launch_options())

    delta = row_delta(out, dout, lse, num_heads, g, plan)
    launch(window_attention_dkdv_kernel, "dkdv", dpad_part, NEED_DPAD=need_dpad and pad_tokens)
    launch(window_attention_dq_kernel, "dq", dbias_part, NEED_DBIAS=need_dbias, SLOT_N=slot_n)
    dbias = None
    if need_dbias:
        n = plan.tokens
        dbias = new_output(bias.shape, bias)
        sum_slots(dbias_part, dbias, 0, n * n, n, n, n)
    dpad = None
    if need_dpad and not pad_tokens:
        dpad = torch.zeros_like(pad_qkv)
    elif need_dpad:
        dpad = new_output(pad_qkv.shape, pad_qkv)
        dpad[:channels].zero_()  # padding tokens' outputs are cropped: their dO, hence dQ, is 0
        sum_slots(dpad_part, dpad, channels, head_dim, channels, 2, head_dim)
    return dqkv, dpad, dbias
