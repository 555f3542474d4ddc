"""Tile plans, the shipped launch configurations, and the launch helper (autotuned on a GPU, fixed when interpreted).

Numerics never depend on the chosen configuration: autotuning only picks the query block, windows per program,
warps and pipeline stages. The key block (the order of the online softmax) and the number of d_bias partial slots
are functions of the problem shape alone, so a re-tune can never change a bit of the backward's reductions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
from triton import knobs

INTERPRET = bool(knobs.runtime.interpret)  # decided by TRITON_INTERPRET when triton is imported

MAX_WINDOW = 16          # N = M² <= 256 tokens: at most 4 blocks per side (8 on the FMA path), unrolled
MAX_HEAD_DIM = 128       # q/k/v tiles of a block stay in registers
KEY_BLOCK = 64           # largest key/query block; windows with N <= 64 are a single block
FMA_BLOCK = 32           # ... on the FMA path (fp32 / fp64 with exact products)
# ptxas's own register target for 8-warp FMA kernels (e.g. 80 on sm_90) spills; an explicit cap avoids that
FMA_MAX_REGISTERS = 255
MAX_SLOTS = 512          # d_bias / d_pad partial sums: at most this many per head ...
PARTIAL_BYTES = 64 << 20  # ... and at most this much memory for them


@dataclass(frozen=True)
class AttentionPlan:
    """How a window of N = M² tokens is tiled: ``num_blocks`` blocks of ``block`` tokens (padded to ``padded``).

    ``input_precision``: tl.dot's input precision. ``fma``: fp32/fp64 with exact products, where tl.dot runs
    on FMA units and needs smaller tiles (more registers per element than tensor-core fragments) to stay clear
    of spills. The forward's plan is kept for the backward, so both agree on every layout.
    """

    window: int
    head_dim: int
    input_precision: str = "ieee"
    fma: bool = False

    @property
    def tokens(self) -> int:
        return self.window * self.window

    @property
    def block(self) -> int:
        # a power of two >= 16 (tl.dot's minimum), at most KEY_BLOCK (FMA_BLOCK on the FMA path)
        return min(max(16, triton.next_power_of_2(self.tokens)), FMA_BLOCK if self.fma else KEY_BLOCK)

    @property
    def num_blocks(self) -> int:
        return triton.cdiv(self.tokens, self.block)

    @property
    def padded(self) -> int:
        return self.num_blocks * self.block

    @property
    def block_d(self) -> int:
        return max(16, triton.next_power_of_2(self.head_dim))

    @property
    def backward_sub_blocks(self) -> tuple[int, int]:
        """(queries per step against a key block in dK/dV, keys per step against a query block in dQ)."""
        return 16, 16 if self.fma else min(self.block, 32)


def attention_plan(window: int, head_dim: int, dtype: torch.dtype) -> AttentionPlan:
    precision = dot_precision(dtype)
    exact_wide = dtype in (torch.float32, torch.float64) and precision == "ieee"
    return AttentionPlan(window, head_dim, precision, fma=exact_wide)


def accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmax statistics, partial sums and matmul accumulation: fp64 for fp64 inputs, fp32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def dot_precision(dtype: torch.dtype) -> str:
    """fp32 inputs use TF32 tensor cores only when torch allows it for matmuls; everything else is exact."""
    if dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return "ieee"


def dot_upcast(dtype: torch.dtype) -> bool:
    """The interpreter multiplies bf16 tiles as raw integers; feed it fp32 (bf16 products are exact in fp32)."""
    return INTERPRET and dtype == torch.bfloat16


def forward_configs(plan: AttentionPlan) -> list[triton.Config]:
    """BLOCK_M query rows per program and WINDOWS (window, head) pairs per program; numerically neutral."""
    if plan.fma:
        warps = 8 if plan.block > 16 else 4
        return [triton.Config({"BLOCK_M": plan.block, "WINDOWS": 1}, num_warps=warps, num_stages=1,
                              maxnreg=FMA_MAX_REGISTERS)]
    if plan.num_blocks == 1:
        rows = plan.padded
        return [
            triton.Config({"BLOCK_M": rows, "WINDOWS": 1}, num_warps=4, num_stages=1),
            triton.Config({"BLOCK_M": rows, "WINDOWS": 2}, num_warps=4, num_stages=2),
        ]
    return [
        triton.Config({"BLOCK_M": 64, "WINDOWS": 1}, num_warps=4, num_stages=1),
        triton.Config({"BLOCK_M": 64, "WINDOWS": 1}, num_warps=8, num_stages=1),
    ]


def backward_configs(plan: AttentionPlan, kernel: str) -> list[triton.Config]:
    """Only warps and stages: the slots, blocks and loop order (hence every sum) are fixed by the shape.

    ``kernel`` ("dkdv" or "dq") names the kernel; both currently share the list.
    """
    if plan.fma:
        return [triton.Config({}, num_warps=8, num_stages=1, maxnreg=FMA_MAX_REGISTERS)]
    return [
        triton.Config({}, num_warps=4, num_stages=1),
        triton.Config({}, num_warps=8, num_stages=1),
    ]


# pure data movement and the slot reduction: one configuration each
PARTITION_CONFIG = triton.Config({"BLOCK_T": 32, "BLOCK_C": 64}, num_warps=4, num_stages=1)
REDUCE_CONFIG = triton.Config({"BLOCK_S": 32}, num_warps=4, num_stages=1)


def backward_slots(total_windows: int, heads: int, plan: AttentionPlan, acc_dtype: torch.dtype) -> tuple[int, int]:
    """(slots, windows per slot): each backward program sums d_bias over a contiguous run of windows.

    A function of the shape only; every slot gets at least one window.
    """
    slot_bytes = heads * plan.padded * plan.padded * torch.finfo(acc_dtype).bits // 8
    slots = max(1, min(MAX_SLOTS, total_windows, PARTIAL_BYTES // slot_bytes))
    per_slot = triton.cdiv(total_windows, slots)
    return triton.cdiv(total_windows, per_slot), per_slot


def check_int32_indices(batch: int, padded_h: int, padded_w: int) -> None:
    """Token and window-slot indices are int32 in the kernels (element offsets are int64)."""
    if batch * padded_h * padded_w >= 2**31:
        raise ValueError(f"triton: {batch} x {padded_h} x {padded_w} window slots exceed 32-bit token indices")


_TUNERS: dict = {}


def launch(kernel, configs: list[triton.Config], key: list[str], grid, *args, **kwargs) -> None:
    """Run ``kernel`` with the best of ``configs`` (autotuned per key on a GPU; the first one when interpreted).

    ``grid`` maps the launch meta-parameters (a dict) to the grid.
    """
    if INTERPRET or len(configs) == 1:
        config = configs[0]
        meta = {**kwargs, **config.kwargs}
        options = {} if INTERPRET or config.maxnreg is None else {"maxnreg": config.maxnreg}
        kernel[grid(meta)](*args, **meta, num_warps=config.num_warps, num_stages=config.num_stages, **options)
        return
    ident = (kernel, tuple(str(c) for c in configs), tuple(key))
    tuner = _TUNERS.get(ident)
    if tuner is None:
        tuner = _TUNERS[ident] = triton.autotune(configs=configs, key=key)(kernel)
    tuner[grid](*args, **kwargs)
