"""Tile plans and the one launch configuration of each kernel per plan.

Every kernel has exactly one launch configuration per plan (no autotuning): the numerics then depend on the
problem shape alone, so results are bit-identical between runs *and* between processes, a new input size never
stalls on tuning, and the launches can be captured in a CUDA graph. The plan is a function of (tokens, head_dim,
dtype, fp32 precision); the key block (the order of the online softmax) and the number of d_bias partial slots
follow from it and from the problem shape.

fp32 inputs take one of three dot-product precisions (FP32_PRECISIONS, chosen per call by
``swin_kernels.ops.triton.fp32_precision``): "tf32x3" (the default: each operand split into a TF32 high part and
its residual, three TF32 tensor-core products, fp32 accuracy), "tf32" (one TF32 product, ~1e-3 relative) and
"ieee" (exact fp32 products on the FMA units).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import triton
from triton import knobs

INTERPRET = bool(knobs.runtime.interpret)  # decided by TRITON_INTERPRET when triton is imported

MAX_TOKENS = 576         # N = [Md·]Mh·Mw <= 576 (24x24, 8x8x9): at most 9 blocks per side (18 on the FMA path)
MAP_TOKENS = 256         # 2-D windows up to this many tokens (16x16) take KERNEL_SHAPES as they are
MAX_HEAD_DIM = 128       # q/k/v tiles of a block stay in registers
KEY_BLOCK = 64           # largest block of the padded layout; windows with N <= 64 are a single block
FMA_BLOCK = 32           # ... on the FMA path (fp32 / fp64 with exact products)
MAX_SLOTS = 512          # d_bias / d_pad partial sums: at most this many per head ...
PARTIAL_BYTES = 64 << 20  # ... and at most this much memory for them
# fp32 dot products: tl.dot's input_precision -> the plan's dtype path (the tile table's key)
FP32_PATHS = {"tf32x3": "tf32x3", "tf32": "tf32", "ieee": "fp32"}
FP32_PRECISIONS = tuple(FP32_PATHS)
DEFAULT_FP32 = "tf32x3"


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
class KernelShape:
    """One kernel's tiles: ``rows`` tokens per program step (forward: queries, BLOCK_M; dK/dV: keys; dQ: queries)
    against ``cols`` tokens per inner step (forward: keys, BLOCK_N; backward: SUB), on ``warps`` warps."""

    rows: int
    cols: int
    warps: int
    maxnreg: int | None = None


# The first configuration without register spills on sm_80 and sm_90 (dropout on, every optional input present:
# the most registers), found by `python -m tools.tune_configs` over candidates in order of preference
# (larger tiles, fewer warps first) and checked by the compile report. Key: (dtype path, BLOCK_D >= 32,
# multi-block window); windows of fewer tokens use tiles capped at their block. Values: (forward, dK/dV, dQ).
# 255 = maxnreg: ptxas's own register target (e.g. 168 for 4 warps, 80 for 8 on sm_90) would spill there.
_S = KernelShape
KERNEL_SHAPES: dict[tuple[str, int, bool], tuple[KernelShape, KernelShape, KernelShape]] = {
    ("bf16", 32, False): (_S(64, 64, 4), _S(64, 16, 4), _S(64, 32, 4, 255)),
    ("bf16", 32, True): (_S(64, 64, 4), _S(64, 16, 4, 255), _S(64, 32, 4, 255)),
    ("bf16", 64, False): (_S(64, 32, 4), _S(64, 16, 4), _S(64, 16, 4)),
    ("bf16", 64, True): (_S(64, 64, 4), _S(32, 16, 4), _S(64, 32, 4)),
    ("bf16", 128, False): (_S(64, 32, 4, 255), _S(32, 16, 4), _S(32, 16, 4, 255)),
    ("bf16", 128, True): (_S(32, 32, 4, 255), _S(32, 16, 8), _S(32, 16, 4, 255)),
    ("tf32", 32, False): (_S(64, 64, 4), _S(64, 16, 4), _S(64, 32, 4, 255)),
    ("tf32", 32, True): (_S(64, 32, 4), _S(64, 16, 4), _S(64, 32, 4, 255)),
    ("tf32", 64, False): (_S(64, 64, 4), _S(32, 16, 8), _S(64, 16, 4)),
    ("tf32", 64, True): (_S(64, 64, 4), _S(32, 16, 4, 255), _S(64, 32, 4)),
    ("tf32", 128, False): (_S(64, 64, 4), _S(32, 16, 8), _S(32, 16, 8)),
    ("tf32", 128, True): (_S(32, 32, 4), _S(32, 16, 8), _S(32, 16, 8)),
    ("fp32", 32, False): (_S(32, 32, 8, 255), _S(32, 16, 8, 255), _S(32, 16, 8, 255)),
    ("fp32", 32, True): (_S(32, 32, 8, 255), _S(32, 16, 8, 255), _S(32, 16, 8, 255)),
    ("fp32", 64, False): (_S(32, 32, 8, 255), _S(32, 16, 8, 255), _S(32, 16, 8, 255)),
    ("fp32", 64, True): (_S(32, 32, 8, 255), _S(32, 16, 8, 255), _S(32, 16, 8, 255)),
    ("fp32", 128, False): (_S(32, 32, 8, 255), _S(32, 16, 8, 255), _S(16, 16, 8, 255)),
    ("fp32", 128, True): (_S(32, 16, 8, 255), _S(16, 16, 8, 255), _S(16, 16, 8, 255)),
    ("fp64", 32, False): (_S(32, 32, 8, 255), _S(32, 16, 8, 255), _S(32, 16, 8, 255)),
    ("fp64", 32, True): (_S(32, 32, 8, 255), _S(32, 16, 8, 255), _S(32, 16, 8, 255)),
    ("fp64", 64, False): (_S(32, 32, 8, 255), _S(16, 16, 8, 255), _S(16, 16, 8, 255)),
    ("fp64", 64, True): (_S(32, 32, 8, 255), _S(16, 16, 8, 255), _S(32, 16, 8, 255)),
}
KERNEL_SHAPES.update({("fp16",) + key[1:]: shapes for key, shapes in KERNEL_SHAPES.items() if key[0] == "bf16"})
# 3xTF32 (three TF32 products per dot: about twice TF32's registers); head_dim > 64 has no spill-free tiling on
# sm_80 (the dK/dV kernel spills at every candidate), so fp32 there takes the exact FMA path (TF32X3_EXACT)
KERNEL_SHAPES.update({
    ("tf32x3", 32, False): (_S(64, 64, 4), _S(64, 16, 4), _S(64, 16, 4)),
    ("tf32x3", 32, True): (_S(64, 64, 4), _S(16, 16, 4), _S(64, 16, 4)),
    ("tf32x3", 64, False): (_S(32, 32, 8), _S(16, 16, 4), _S(32, 16, 8)),
    ("tf32x3", 64, True): (_S(32, 32, 4), _S(16, 16, 4), _S(32, 16, 8)),
})
# Beyond those maps: windows of more than MAP_TOKENS tokens ("large": longer key loops) and 3-D windows ("volume",
# WINDOW_D > 1: the depth axis adds index arithmetic) take their class's shapes above except where these differ,
# found by `python -m tools.tune_configs --kind large|volume`, which tries the map's shapes first, on their windows.
# Key: (kind, dtype path, BLOCK_D >= 32, multi-block window).
KIND_SHAPES: dict[tuple[str, str, int, bool], tuple[KernelShape, KernelShape, KernelShape]] = {
    ("large", "bf16", 32, True): (_S(64, 64, 4, 255), _S(64, 16, 4, 255), _S(64, 32, 4, 255)),
    ("large", "tf32", 64, True): (_S(64, 64, 4), _S(32, 16, 4, 255), _S(64, 16, 4, 255)),
    ("large", "tf32", 128, True): (_S(32, 32, 4), _S(16, 16, 8), _S(32, 16, 8, 255)),
    ("volume", "bf16", 32, False): (_S(64, 64, 4), _S(64, 16, 4, 255), _S(64, 32, 4, 255)),
    ("volume", "bf16", 32, True): (_S(64, 64, 4, 255), _S(64, 16, 4, 255), _S(64, 32, 4, 255)),
    ("volume", "bf16", 64, True): (_S(64, 32, 4), _S(32, 16, 4), _S(64, 32, 4)),
    ("volume", "tf32", 64, True): (_S(64, 64, 4, 255), _S(32, 16, 4, 255), _S(64, 16, 4)),
    ("volume", "tf32", 128, False): (_S(64, 64, 4), _S(32, 16, 8), _S(32, 16, 8, 255)),
    ("volume", "tf32", 128, True): (_S(32, 32, 4, 255), _S(32, 16, 8), _S(16, 16, 4)),
    ("volume", "fp32", 128, False): (_S(32, 32, 8, 255), _S(16, 16, 8, 255), _S(16, 16, 8, 255)),
    ("volume", "tf32x3", 32, True): (_S(64, 32, 4), _S(16, 16, 4), _S(64, 16, 4)),
}
KIND_SHAPES.update({key[:1] + ("fp16",) + key[2:]: shapes for key, shapes in KIND_SHAPES.items() if key[1] == "bf16"})
# classes with no spill-free configuration at all: the backend declines them (unsupported_reason)
UNSUPPORTED = {("fp64", 128, False), ("fp64", 128, True)}


def next_power_of_2(n: int) -> int:
    """triton.next_power_of_2 in plain Python (n >= 1; also for symbolic sizes): triton's is a constexpr function
    costing ~2 us per host call."""
    n -= 1
    for bits in (1, 2, 4, 8, 16, 32):
        n |= n >> bits
    return n + 1


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class AttentionPlan:
    """How a window of N tokens is laid out (``num_blocks`` blocks of ``block`` tokens, padded to ``padded``) and
    tiled by each kernel (``shapes``).

    ``path``: the dtype path ("fp16", "bf16", "tf32x3", "tf32", "fp32", "fp64"); ``input_precision``: tl.dot's
    ("ieee", "tf32" or "tf32x3"). ``fma``: fp32/fp64 with exact products, where tl.dot runs on FMA units and needs
    smaller tiles (more registers per element than tensor-core fragments). ``volume``: a 3-D window (depth > 1), whose kernels may take
    other tiles (KIND_SHAPES). The forward's plan is kept for the backward, so both agree
    on every layout; the kernels' own tiles divide the block, so they address the same padded layout. Derived
    sizes are computed once per plan (the launchers read them on every call).
    """

    tokens: int
    head_dim: int
    input_precision: str = "ieee"
    fma: bool = False
    path: str = "bf16"
    volume: bool = False

    @functools.cached_property
    def block(self) -> int:
        # a power of two >= 16 (tl.dot's minimum), at most KEY_BLOCK (FMA_BLOCK on the FMA path)
        return min(max(16, next_power_of_2(self.tokens)), FMA_BLOCK if self.fma else KEY_BLOCK)

    @functools.cached_property
    def num_blocks(self) -> int:
        return cdiv(self.tokens, self.block)

    @functools.cached_property
    def padded(self) -> int:
        return self.num_blocks * self.block

    @functools.cached_property
    def block_d(self) -> int:
        return max(16, next_power_of_2(self.head_dim))

    @functools.cached_property
    def shape_class(self) -> tuple[str, int, bool]:
        return self.path, max(32, self.block_d), self.num_blocks > 1

    @functools.cached_property
    def kind(self) -> str:
        """"volume" (a 3-D window), "large" (a 2-D window of more than MAP_TOKENS tokens) or "map"."""
        return "volume" if self.volume else "large" if self.tokens > MAP_TOKENS else "map"

    @functools.cached_property
    def supported(self) -> bool:
        return self.shape_class not in UNSUPPORTED

    @functools.cached_property
    def shapes(self) -> tuple[KernelShape, KernelShape, KernelShape]:
        """(forward, dK/dV, dQ) tiles, each capped at the block (a small window needs no larger tile)."""
        chosen = KIND_SHAPES.get((self.kind, *self.shape_class), KERNEL_SHAPES[self.shape_class])
        return tuple(KernelShape(min(s.rows, self.block), min(s.cols, self.block), s.warps, s.maxnreg)
                     for s in chosen)

    def split_blocks(self, kernel: str) -> int:
        """Programs per (slot, head) of a backward kernel ("dkdv" or "dq"): one per block of its tiles for windows
        beyond the maps (kind "large" or "volume": few d_bias slots fit their partial-sum memory, so the blocks
        supply the parallelism), else 1 (a program walks all blocks of its windows)."""
        blocks = self.padded // self.shapes[1 if kernel == "dkdv" else 2].rows
        return blocks if self.kind != "map" and blocks > 1 else 1

    def forward_config(self) -> LaunchConfig:
        """BLOCK_M query rows and BLOCK_N keys per step; WINDOWS (window, head) pairs per program."""
        s = self.shapes[0]
        return LaunchConfig(s.warps, 1, s.maxnreg, (("BLOCK_M", s.rows), ("BLOCK_N", s.cols), ("WINDOWS", 1)))

    def backward_config(self, kernel: str) -> LaunchConfig:
        """``kernel``: "dkdv" or "dq"; meta BLOCK (keys or queries per program step) and SUB (per inner step)."""
        s = self.shapes[1 if kernel == "dkdv" else 2]
        return LaunchConfig(s.warps, 1, s.maxnreg, (("BLOCK", s.rows), ("SUB", s.cols)))


@functools.lru_cache(maxsize=None)
def cached_attention_plan(tokens: int, head_dim: int, dtype: torch.dtype, fp32_precision: str = DEFAULT_FP32,
                          volume: bool = False) -> AttentionPlan:
    """attention_plan, one object per key (a function of its arguments alone); ints only (no symbolic sizes)."""
    return attention_plan(tokens, head_dim, dtype, fp32_precision, volume)


def attention_plan(tokens: int, head_dim: int, dtype: torch.dtype, fp32_precision: str = DEFAULT_FP32,
                   volume: bool = False) -> AttentionPlan:
    """``fp32_precision``: one of FP32_PRECISIONS, read for fp32 inputs only (the other dtypes have one path each);
    ``volume``: the window has a depth > 1 (the kernels' WINDOW_D > 1; index_map.py)."""
    precision = dot_precision(dtype, fp32_precision)
    if precision == "tf32x3" and not _has_tf32x3_tiles(tokens, head_dim):
        precision = "ieee"  # fp32 accuracy either way: the exact products
    exact_wide = dtype in (torch.float32, torch.float64) and precision == "ieee"
    path = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}.get(
        dtype, FP32_PATHS[precision])
    return AttentionPlan(tokens, head_dim, precision, fma=exact_wide, path=path, volume=volume)


def _has_tf32x3_tiles(tokens: int, head_dim: int) -> bool:
    """Whether 3xTF32 has a spill-free tiling of this plan class (head_dim <= 64)."""
    block_d = max(32, next_power_of_2(head_dim))
    return ("tf32x3", block_d, tokens > KEY_BLOCK) in KERNEL_SHAPES


def accumulator_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmax statistics, partial sums and matmul accumulation: fp64 for fp64 inputs, fp32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def dot_precision(dtype: torch.dtype, fp32_precision: str) -> str:
    """tl.dot's input_precision: fp32 inputs take ``fp32_precision`` (FP32_PRECISIONS); fp16 / bf16 products are
    exact in the fp32 accumulator and fp64 runs on the FMA units, so every other dtype is "ieee"."""
    if dtype != torch.float32:
        return "ieee"
    if fp32_precision not in FP32_PATHS:
        raise ValueError(f"triton: fp32 precision must be one of {', '.join(FP32_PRECISIONS)}, got {fp32_precision!r}")
    return fp32_precision


def fast_log2(acc_dtype: torch.dtype) -> bool:
    """The stored log-sum-exp of fp32 statistics takes log2 from lg2.approx (inline PTX, so not in the interpreter)."""
    return acc_dtype == torch.float32 and not INTERPRET


def check_scale(scale: float) -> None:
    """The score table holds (bias + mask) / scale (score_table.py): the scale must be finite and invertible."""
    if not (math.isfinite(scale) and scale != 0.0 and math.isfinite(1.0 / scale)):
        raise ValueError(f"triton: the attention scale must be finite and nonzero, got {scale}")


def dot_upcast(dtype: torch.dtype) -> bool:
    """The interpreter multiplies bf16 tiles as raw integers; feed it fp32 (bf16 products are exact in fp32)."""
    return INTERPRET and dtype == torch.bfloat16


# pure data movement and the slot reduction: one configuration each
PARTITION_CONFIG = LaunchConfig(4, 1, None, (("BLOCK_T", 32), ("BLOCK_C", 64)))
REDUCE_CONFIG = LaunchConfig(4, 1, None, (("BLOCK_S", 32),))
ROW_DELTA_CONFIG = LaunchConfig(4, 1, None, (("BLOCK_M", 64),))
SCORE_TABLE_CONFIG = LaunchConfig(4, 1, None, (("BLOCK_I", 16),))


def backward_slots(total_windows: int, heads: int, plan: AttentionPlan, acc_dtype: torch.dtype,
                   kernel: str = "dq") -> tuple[int, int]:
    """(slots, windows per slot): each backward program sums d_bias over a contiguous run of windows.

    A function of the shape only; every slot gets at least one window. The d_bias partial sums (dQ kernel) bound
    the slots; beyond the maps (plan.kind "large" or "volume") the dK/dV kernel, whose partial sums are only the
    pad vector's, takes its own, up to MAX_SLOTS. Maps use the dQ kernel's slots for both.
    """
    if kernel == "dkdv" and plan.kind != "map":
        slot_bytes = heads * 2 * plan.block_d * torch.finfo(acc_dtype).bits // 8
    else:
        slot_bytes = heads * plan.padded * plan.padded * torch.finfo(acc_dtype).bits // 8
    slots = max(1, min(MAX_SLOTS, total_windows, PARTIAL_BYTES // slot_bytes))
    per_slot = cdiv(total_windows, slots)
    return cdiv(total_windows, per_slot), per_slot


def check_int32_indices(batch: int, *padded_sizes: int) -> None:
    """Token and window-slot indices are int32 in the kernels (element offsets are int64); ``padded_sizes``: the
    padded (H, W) of a map or (D, H, W) of a volume."""
    slots = batch
    for n in padded_sizes:
        slots = slots * n
    if slots >= 2**31:
        sizes = " x ".join(str(n) for n in (batch, *padded_sizes))
        raise ValueError(f"triton: {sizes} window slots exceed 32-bit token indices")


def split_float(value: float) -> tuple[float, float]:
    """(hi, lo) fp32 parts with hi + lo = value to ~2^-48: Triton passes Python floats as fp32, and fp64 kernels
    rebuild the constant as hi + lo in fp64."""
    import numpy as np

    hi = float(np.float32(value))
    return hi, float(np.float32(value - hi))


LOG2E = 1.4426950408889634
