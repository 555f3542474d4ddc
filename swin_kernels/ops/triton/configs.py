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

from .tile_table import TILES

INTERPRET = bool(knobs.runtime.interpret)  # decided by TRITON_INTERPRET when triton is imported

MAX_TOKENS = 576         # N = [Md·]Mh·Mw <= 576 (24x24, 8x8x9): at most 9 blocks per side (18 on the FMA path)
MAP_TOKENS = 256         # 2-D windows up to this many tokens (16x16) take the tile table's map tiles
MAX_HEAD_DIM = 128       # q/k/v tiles of a block stay in registers
KEY_BLOCK = 64           # largest block of the padded layout; windows with N <= 64 are a single block
FMA_BLOCK = 32           # ... on the FMA path (fp32 / fp64 with exact products)
MAX_SLOTS = 512          # d_bias partial sums: at most this many slots (dK/dV: at least) ...
PARTIAL_BYTES = 64 << 20  # ... and at most this much memory for them
# dQ / d_bias programs: about two waves of its resident blocks (3 per SM at 132 SMs) keep the GPU busy; more
# slots only add d_bias partial sums to write and read back (cost model: Swin-T stage 4 backward 88.5 -> 68.7 us)
DQ_PROGRAMS = 768
# dK/dV programs (its partial sums are the pad vector's alone): shorter runs of windows, a shorter tail (cost
# model: Swin-T stage 1 dK/dV 231 us at 1536 programs, 194 us at 3072)
DKDV_PROGRAMS = 3072
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


# The tiles of each kernel per plan class and GPU family: tile_table.py, written by `python -m tools.tune_configs`
# and checked by the compile report (every family on its own target, the default on sm_80 and sm_90).
FAMILIES = ("default", "sm_80", "sm_90")  # the tile table's sections (tile_table.py)
# compute capability -> family: the exact targets the compile report checks; any other GPU takes the default
_CAPABILITY_FAMILIES = {(8, 0): "sm_80", (9, 0): "sm_90"}


def _shape(entry) -> KernelShape:
    return entry if isinstance(entry, KernelShape) else KernelShape(*entry)


def tile_shapes(family: str, kind: str, shape_class: tuple, tiles: dict | None = None) -> tuple:
    """(forward, dK/dV, dQ) KernelShapes of a plan class on a GPU family, from ``tiles`` (default: TILES).

    Looked up in order: the family's entry for the kind, the default's for the kind, the family's map entry, the
    default's map entry: a family's own tiles win, and a kind's tiles (tuned on its longer loops or 3-D index
    arithmetic) win over the map's. fp16 takes bf16's tiles."""
    tiles = TILES if tiles is None else tiles
    path, block_d, multi = shape_class
    key = ("bf16" if path == "fp16" else path, block_d, multi)
    order = ((family, kind), ("default", kind), (family, "map"), ("default", "map"))
    for section, k in order:
        entry = tiles.get(section, {}).get((k, *key))
        if entry is not None:
            return tuple(_shape(s) for s in entry)
    raise KeyError(f"no tiles for {kind} {shape_class} on {family}")


@functools.lru_cache(maxsize=None)
def _cuda_family(index: int) -> str:
    return _CAPABILITY_FAMILIES.get(tuple(torch.cuda.get_device_capability(index)), "default")


def device_family(device: torch.device) -> str:
    """The tile table's family of the GPU ``device`` is on ("default" for anything else, the interpreter
    included); one capability query per GPU per process."""
    if device.type != "cuda" or INTERPRET:
        return "default"
    return _cuda_family(torch.cuda.current_device() if device.index is None else device.index)


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
    other tiles (tile_table.py). ``family``: the GPU family whose tiles it takes (device_family). The forward's plan is kept for the backward, so both agree
    on every layout; the kernels' own tiles divide the block, so they address the same padded layout. Derived
    sizes are computed once per plan (the launchers read them on every call).
    """

    tokens: int
    head_dim: int
    input_precision: str = "ieee"
    fma: bool = False
    path: str = "bf16"
    volume: bool = False
    family: str = "default"

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
        chosen = tile_shapes(self.family, self.kind, self.shape_class)
        return tuple(KernelShape(min(s.rows, self.block), min(s.cols, self.block), s.warps, s.maxnreg)
                     for s in chosen)

    def split_blocks(self, kernel: str) -> int:
        """Programs per (slot, head) of a backward kernel ("dkdv" or "dq"): one per block of its tiles for windows
        beyond the maps (kind "large" or "volume": few d_bias slots fit their partial-sum memory, so the blocks
        supply the parallelism), else 1 (a program walks all blocks of its windows)."""
        blocks = self.padded // self.shapes[1 if kernel == "dkdv" else 2].rows
        return blocks if self.kind != "map" and blocks > 1 else 1

    @functools.cached_property
    def dbias_slot_tokens(self) -> int:
        """Row length of a d_bias slot of the dQ kernel: N where it holds d_bias in registers (one block of at
        most 4 SUB chunks: stored once, masked), else the padded layout's (added to in place, unmasked)."""
        meta = self.backward_config("dq").kwargs
        return dbias_slot_tokens(self.tokens, self.padded, meta["BLOCK"], meta["SUB"])

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
                          volume: bool = False, family: str = "default") -> AttentionPlan:
    """attention_plan, one object per key (a function of its arguments alone); ints only (no symbolic sizes)."""
    return attention_plan(tokens, head_dim, dtype, fp32_precision, volume, family)


def attention_plan(tokens: int, head_dim: int, dtype: torch.dtype, fp32_precision: str = DEFAULT_FP32,
                   volume: bool = False, family: str = "default") -> AttentionPlan:
    """``fp32_precision``: one of FP32_PRECISIONS, read for fp32 inputs only (the other dtypes have one path each);
    ``volume``: the window has a depth > 1 (the kernels' WINDOW_D > 1; index_map.py); ``family``: the GPU family
    of the tile table (FAMILIES; device_family)."""
    precision = dot_precision(dtype, fp32_precision)
    if precision == "tf32x3" and not _has_tf32x3_tiles(tokens, head_dim, family):
        precision = "ieee"  # fp32 accuracy either way: the exact products
    exact_wide = dtype in (torch.float32, torch.float64) and precision == "ieee"
    path = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}.get(
        dtype, FP32_PATHS[precision])
    return AttentionPlan(tokens, head_dim, precision, fma=exact_wide, path=path, volume=volume, family=family)


def _has_tf32x3_tiles(tokens: int, head_dim: int, family: str) -> bool:
    """Whether 3xTF32 has a spill-free tiling of this plan class on the family (in the default: head_dim <= 64)."""
    key = ("map", "tf32x3", max(32, next_power_of_2(head_dim)), tokens > KEY_BLOCK)
    return key in TILES["default"] or key in TILES.get(family, {})


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


def dbias_slot_tokens(tokens: int, padded: int, block: int, sub: int) -> int:
    """AttentionPlan.dbias_slot_tokens for dQ tiles of ``block`` queries by ``sub`` keys."""
    return tokens if padded == block and padded // sub <= 4 else padded


def backward_slots(total_windows: int, heads: int, plan: AttentionPlan, acc_dtype: torch.dtype,
                   kernel: str = "dq") -> tuple[int, int]:
    """(slots, windows per slot): each backward program sums its partials over a contiguous run of windows.

    A function of the shape only (so the summation order, hence every bit of d_bias, is too); every slot gets at
    least one window. The dQ kernel's slot is a (heads, N, N) d_bias partial sum (padded for multi-block windows),
    written once and read back by slot_sums: its slots stop at about DQ_PROGRAMS programs (with the query blocks of
    split windows), so few windows of many heads (Swin stages 3-4) do not write one partial sum per window. The
    dK/dV kernel's partial sums are only the pad vector's: it takes MAX_SLOTS slots, more where that makes fewer
    than DKDV_PROGRAMS programs.
    """
    if kernel == "dkdv":
        slot_bytes = heads * 2 * plan.block_d * torch.finfo(acc_dtype).bits // 8
        wanted = max(MAX_SLOTS, cdiv(DKDV_PROGRAMS, heads * plan.split_blocks("dkdv")))
    else:
        slot_bytes = heads * plan.dbias_slot_tokens ** 2 * torch.finfo(acc_dtype).bits // 8
        wanted = min(MAX_SLOTS, cdiv(DQ_PROGRAMS, heads * plan.split_blocks("dq")))
    slots = max(1, min(wanted, total_windows, PARTIAL_BYTES // slot_bytes))
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
