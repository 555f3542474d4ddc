"""Tile plans and the one launch configuration of each kernel per plan.

Every kernel has exactly one launch configuration per plan (no autotuning): the numerics then depend on the
problem shape alone, so results are bit-identical between runs *and* between processes, a new input size never
stalls on tuning, and the launches can be captured in a CUDA graph. The plan is a function of (tokens, head_dim,
dtype, TF32 permission); the key block (the order of the online softmax) and the number of d_bias partial slots
follow from it and from the problem shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
from triton import knobs

INTERPRET = bool(knobs.runtime.interpret)  # decided by TRITON_INTERPRET when triton is imported

MAX_TOKENS = 256         # N = Mh·Mw <= 256 (e.g. 16x16): at most 4 blocks per side (8 on the FMA path), unrolled
MAX_HEAD_DIM = 128       # q/k/v tiles of a block stay in registers
KEY_BLOCK = 64           # largest key/query block; windows with N <= 64 are a single block
FMA_BLOCK = 32           # ... on the FMA path (fp32 / fp64 with exact products)
# ptxas's own register target for 8-warp FMA kernels (e.g. 80 on sm_90) spills; an explicit cap avoids that
FMA_MAX_REGISTERS = 255
MAX_SLOTS = 512          # d_bias / d_pad partial sums: at most this many per head ...
PARTIAL_BYTES = 64 << 20  # ... and at most this much memory for them


@dataclass(frozen=True)
class LaunchConfig:
    num_warps: int
    num_stages: int = 1
    maxnreg: int | None = None
    meta: tuple = ()  # (name, value) launch meta-parameters

    @property
    def kwargs(self) -> dict:
        return dict(self.meta)

    def launch_options(self) -> dict:
        options = {"num_warps": self.num_warps, "num_stages": self.num_stages}
        if self.maxnreg is not None and not INTERPRET:
            options["maxnreg"] = self.maxnreg
        return options


@dataclass(frozen=True)
class AttentionPlan:
    """How a window of N tokens is tiled: ``num_blocks`` blocks of ``block`` tokens (padded to ``padded``).

    ``input_precision``: tl.dot's input precision ("ieee" or "tf32"). ``fma``: fp32/fp64 with exact products,
    where tl.dot runs on FMA units and needs smaller tiles (more registers per element than tensor-core
    fragments) to stay clear of spills. The forward's plan is kept for the backward, so both agree on every layout.
    """

    tokens: int
    head_dim: int
    input_precision: str = "ieee"
    fma: bool = False

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

    # ------------------------------------------------------------------------------ launch configurations
    def forward_config(self) -> LaunchConfig:
        """BLOCK_M query rows and WINDOWS (window, head) pairs per program."""
        if self.fma:
            return LaunchConfig(8 if self.block > 16 else 4, 1, FMA_MAX_REGISTERS,
                                (("BLOCK_M", self.block), ("WINDOWS", 1)))
        rows = self.padded if self.num_blocks == 1 else KEY_BLOCK
        return LaunchConfig(4, 1, None, (("BLOCK_M", rows), ("WINDOWS", 1)))

    def backward_config(self) -> LaunchConfig:
        if self.fma:
            return LaunchConfig(8, 1, FMA_MAX_REGISTERS)
        return LaunchConfig(4, 1, None)


def attention_plan(tokens: int, head_dim: int, dtype: torch.dtype, tf32: bool = False) -> AttentionPlan:
    precision = dot_precision(dtype, tf32)
    exact_wide = dtype in (torch.float32, torch.float64) and precision == "ieee"
    return AttentionPlan(tokens, head_dim, precision, fma=exact_wide)


def accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmax statistics, partial sums and matmul accumulation: fp64 for fp64 inputs, fp32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def dot_precision(dtype: torch.dtype, tf32: bool) -> str:
    """fp32 inputs use TF32 tensor cores only when torch allows it for fp32 matmuls; everything else is exact."""
    return "tf32" if dtype == torch.float32 and tf32 else "ieee"


def dot_upcast(dtype: torch.dtype) -> bool:
    """The interpreter multiplies bf16 tiles as raw integers; feed it fp32 (bf16 products are exact in fp32)."""
    return INTERPRET and dtype == torch.bfloat16


# pure data movement and the slot reduction: one configuration each
PARTITION_CONFIG = LaunchConfig(4, 1, None, (("BLOCK_T", 32), ("BLOCK_C", 64)))
REDUCE_CONFIG = LaunchConfig(4, 1, None, (("BLOCK_S", 32),))
SCORE_TABLE_CONFIG = LaunchConfig(4, 1, None, (("BLOCK_I", 16),))


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


def split_float(value: float) -> tuple[float, float]:
    """(hi, lo) fp32 parts with hi + lo = value to ~2^-48: Triton passes Python floats as fp32, and fp64 kernels
    rebuild the constant as hi + lo in fp64."""
    import numpy as np

    hi = float(np.float32(value))
    return hi, float(np.float32(value - hi))


LOG2E = 1.4426950408889634
