"""The paper's complexity claims, checked by counting and by measuring.

Swin's Omega(MSA) = 4hwC² + 2(hw)²C and Omega(W-MSA) = 4hwC² + 2M²hwC count multiply-adds of the four
Linears' worth of projections (qkv: 3hwC², proj: hwC²) and the two attention matmuls (q kᵀ and P v). PyTorch's
FlopCounterMode counts 2 FLOPs per multiply-add of mm/addmm/bmm (and nothing for softmax, adds, copies), so
where the formula's assumptions hold its count is exactly 2·Omega. Counting runs on meta tensors: no memory,
any size. The measured part times the forward pass of global MSA and of W-MSA (reference and every fused
backend available) on growing maps, fits log-log slopes and finds the size below which global attention wins.

    python -m benchmarks.complexity [--full]     prints the tables (make demo also writes them to the report)
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import swin_kernels
from swin_kernels import backends
from swin_kernels import reference as ref
from swin_kernels.backends import Request
from swin_kernels.reference_model import SwinTransformerBlock

from .memory import peak_bytes
from .timing import interleaved_times, rounds_for, time_once

Progress = Callable[[str], None] | None


def omega_msa(h: int, w: int, c: int) -> int:
    """Multiply-adds of global MSA on an h x w map with C channels (the paper's Eq. 1)."""
    return 4 * h * w * c * c + 2 * (h * w) ** 2 * c


def omega_wmsa(h: int, w: int, c: int, m: int) -> int:
    """Multiply-adds of W-MSA with M x M windows (the paper's Eq. 2; h and w multiples of M)."""
    return 4 * h * w * c * c + 2 * m * m * h * w * c


class GlobalAttention(nn.Module):
    """MSA over all h·w tokens of a (B, H, W, C) map: the paper's baseline (no windows, no relative bias)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads, self.scale = num_heads, (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        q, k, v = ref.split_heads(self.qkv(x.reshape(b, h * w, c)), self.num_heads)
        out = ref.merge_heads(ref.attention_core(q, k, v, scale=self.scale))
        return self.proj(out).reshape(b, h, w, c)


# --------------------------------------------------------------------------------------------- FLOP counts
@dataclass
class FlopRow:
    side: int  # h = w
    padded: int  # Hp = Wp, the side padded to a multiple of M
    channels: int
    window: int
    msa: int  # counted FLOPs of global MSA
    wmsa_official: int  # counted, official structure: pad x, then qkv and proj on every (padded) window token
    wmsa_fused: int  # counted, FusedWindowAttention: qkv and proj on the h·w map, attention on padded windows

    @property
    def omega_msa(self) -> int:
        return omega_msa(self.side, self.side, self.channels)

    @property
    def omega_wmsa(self) -> int:
        return omega_wmsa(self.side, self.side, self.channels, self.window)

    @property
    def divisible(self) -> bool:
        return self.side == self.padded

    @property
    def expected_official(self) -> int:
        """Omega(W-MSA) with h, w replaced by the padded Hp, Wp (every Linear and matmul sees the padding)."""
        return omega_wmsa(self.padded, self.padded, self.channels, self.window)

    @property
    def expected_fused(self) -> int:
        """4hwC² on the real tokens plus 2M²·HpWp·C for the attention on padded windows."""
        return 4 * self.side**2 * self.channels**2 + 2 * self.window**2 * self.padded**2 * self.channels

    @property
    def matches(self) -> bool:
        """Counts equal 2 x the multiply-adds: Omega itself where h, w are multiples of M, the padded forms elsewhere."""
        return (self.msa == 2 * self.omega_msa and self.wmsa_official == 2 * self.expected_official
                and self.wmsa_fused == 2 * self.expected_fused
                and (not self.divisible or self.wmsa_official == 2 * self.omega_wmsa))


def count_flops(fn: Callable, *args) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


def flop_row(side: int, channels: int, heads: int, window: int) -> FlopRow:
    with torch.device("meta"):
        x = torch.empty(1, side, side, channels)
        msa = GlobalAttention(channels, heads)
        block = SwinTransformerBlock(channels, heads, window, 0)
        fused = swin_kernels.FusedWindowAttention(channels, heads, window, 0, backend="reference")
        return FlopRow(side, side + (-side) % window, channels, window, count_flops(msa, x),
                       count_flops(block.attention_branch, x), count_flops(fused, x))


@dataclass
class WorkedExample:
    side: int
    channels: int
    window: int
    counted_saving_macs: int  # (count(MSA) - count(W-MSA)) / 2
    formula_saving_macs: int


def worked_example(side=112, channels=128, heads=4, window=7) -> WorkedExample:
    """The paper's example (h = w = 112, M = 7, C = 128): the multiply-adds W-MSA saves over MSA."""
    row = flop_row(side, channels, heads, window)
    return WorkedExample(side, channels, window, (row.msa - row.wmsa_official) // 2,
                         omega_msa(side, side, channels) - omega_wmsa(side, side, channels, window))


def count_crossover(channels: int, window: int) -> str:
    """Square maps larger than one window where global MSA needs fewer multiply-adds than W-MSA (padding counted)."""
    official, fused = [], []
    for side in range(window + 1, 8 * window):
        padded = side + (-side) % window
        msa = omega_msa(side, side, channels)
        if msa < omega_wmsa(padded, padded, channels, window):
            official.append(side)
        if msa < 4 * side**2 * channels**2 + 2 * window**2 * padded**2 * channels:
            fused.append(side)

    def sides(found):
        return ", ".join(f"{s}²" for s in found) if found else "no size"

    return (f"global MSA needs fewer multiply-adds than the official W-MSA on {sides(official)} "
            f"and than FusedWindowAttention on {sides(fused)} (maps whose padding to a multiple of M costs more "
            f"than the windows save); at every other size above {window}² W-MSA needs fewer")


# ------------------------------------------------------------------------------------------- measurements
@dataclass
class Series:
    name: str
    tokens: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    peak_bytes: list[int] = field(default_factory=list)


@dataclass
class Fit:
    name: str
    time_slope: float
    memory_slope: float
    flop_slope: float  # the slope the FLOP formula has over the same range, for comparison
    fit_from_tokens: int


@dataclass
class ComplexityResult:
    channels: int
    heads: int
    window: int
    batch: int
    flops: list[FlopRow]
    example: WorkedExample
    series: list[Series]
    fits: list[Fit]
    crossovers: dict[str, str]  # W-MSA series name -> sentence
    count_crossover: str
    threads: int
    plots: dict[str, str] = field(default_factory=dict)  # title -> file name
    sides_left_out: list[int] = field(default_factory=list)  # planned map sides not measured (time budget)


def loglog_slope(xs, ys) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def crossover(msa: Series, wmsa: Series) -> str:
    """The map size below which global attention was faster, from the last size where MSA still won."""
    faster = [w < m for w, m in zip(wmsa.seconds, msa.seconds)]
    if all(faster):
        return f"W-MSA was faster at every size measured, from {wmsa.tokens[0]} tokens"
    if not any(faster):
        return f"global MSA was faster at every size measured, up to {wmsa.tokens[-1]} tokens"
    last_msa_win = max(i for i, f in enumerate(faster) if not f)
    if last_msa_win == len(faster) - 1:
        return f"global MSA was still faster at the largest size measured ({wmsa.tokens[-1]} tokens)"
    lo, hi = wmsa.tokens[last_msa_win], wmsa.tokens[last_msa_win + 1]
    # interpolate the ratio W-MSA/MSA through 1 on log-log axes between the two sizes
    r_lo = math.log(wmsa.seconds[last_msa_win] / msa.seconds[last_msa_win])
    r_hi = math.log(wmsa.seconds[last_msa_win + 1] / msa.seconds[last_msa_win + 1])
    t = r_lo / (r_lo - r_hi)
    at = math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo)))
    return (f"global MSA is cheaper below ≈ {at:.0f} tokens (≈ {math.sqrt(at):.0f}² map): it won at {lo} tokens, "
            f"W-MSA from {hi} tokens on")


def measure_sweep(sides: list[int], channels: int, heads: int, window: int, batch: int, budget_s: float,
                  progress: Progress = None, out_of_time: Callable[[], bool] | None = None) -> list[Series]:
    """Forward (inference) time and peak memory of MSA and each W-MSA variant, interleaved per size.

    ``out_of_time()``, asked before each size: once true, the larger sizes are left out."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    msa = GlobalAttention(channels, heads).to(device, dtype)
    models = {"MSA (global, eager)": msa}
    for backend in swin_kernels.available_backends():
        request = Request("attention", device, dtype, (window, window), channels // heads)
        if backends.reason(backend, request) is not None or (backend == "triton" and device.type != "cuda"):
            continue  # cannot run here, or only under the Triton interpreter, whose speed means nothing
        name = f"W-MSA swin_kernels[{backend}]"
        models[name] = swin_kernels.FusedWindowAttention(channels, heads, window, 0, backend=backend).to(device, dtype)
    series = {name: Series(name) for name in models}
    for side in sides:
        if out_of_time is not None and out_of_time():
            if progress:
                progress(f"complexity: out of its time budget, maps from {side}x{side} on left out")
            break
        if progress:
            progress(f"complexity: {side}x{side} map ({side * side} tokens)")
        x = torch.randn(batch, side, side, channels, device=device, dtype=dtype)

        def call(model):
            with torch.no_grad():
                return model(x)

        for model in models.values():  # warm-up
            call(model)
        estimate = sum(time_once(call, (m,), device) for m in models.values())
        rounds = rounds_for(estimate, min_rounds=5, max_rounds=30, budget_s=budget_s)
        samples = interleaved_times([(call, lambda m=model: (m,)) for model in models.values()], rounds, device)
        for (name, model), times in zip(models.items(), samples):
            s = series[name]
            s.tokens.append(side * side)
            s.seconds.append(statistics.median(times))
            s.peak_bytes.append(peak_bytes(call, (model,), device))
    return list(series.values())


def fits_for(series: list[Series], channels: int, window: int, fit_from_tokens: int) -> list[Fit]:
    fits = []
    for s in series:
        idx = [i for i, t in enumerate(s.tokens) if t >= fit_from_tokens]
        if len(idx) < 2:
            continue
        tokens = [s.tokens[i] for i in idx]
        sides = [math.isqrt(t) for t in tokens]
        formula = [omega_msa(a, a, channels) if s.name.startswith("MSA") else omega_wmsa(a, a, channels, window)
                   for a in sides]
        fits.append(Fit(s.name, loglog_slope(tokens, [s.seconds[i] for i in idx]),
                        loglog_slope(tokens, [s.peak_bytes[i] for i in idx]),
                        loglog_slope(tokens, formula), tokens[0]))
    return fits


def run(full: bool = False, progress: Progress = None, plot_dir=None,
        out_of_time: Callable[[], bool] | None = None) -> ComplexityResult:
    """FLOP counts, the worked example, the measured sweep, slopes, crossovers and (with plot_dir) the plots.

    ``out_of_time()``: the sweep stops before the next map size once it returns true."""
    channels, heads, window, batch = 96, 3, 7, 1  # Swin-T stage-1 width
    flop_sides = [7, 14, 28, 56, 112, 224, 10, 30, 50]
    if progress:
        progress("complexity: counting FLOPs")
    flops = [flop_row(side, channels, heads, window) for side in flop_sides]
    example = worked_example()
    sides = [7, 10, 14, 21, 28, 35, 42, 56, 70] + ([84, 98, 112] if full else [])
    series = measure_sweep(sides, channels, heads, window, batch, budget_s=2.0 if full else 1.0, progress=progress,
                           out_of_time=out_of_time)
    fit_from = 28 * 28
    fits = fits_for(series, channels, window, fit_from)
    msa = series[0]
    crossovers = {s.name: crossover(msa, s) for s in series[1:]} if msa.tokens else {}
    result = ComplexityResult(channels, heads, window, batch, flops, example, series, fits, crossovers,
                              count_crossover(channels, window), torch.get_num_threads(),
                              sides_left_out=[side for side in sides if side * side not in series[0].tokens])
    if plot_dir is not None and len(msa.tokens) > 1:
        from .plots import complexity_plots

        result.plots = complexity_plots(result, plot_dir)
    return result


def main() -> None:
    import argparse

    from .report import complexity_section

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="larger maps (up to 112x112)")
    args = parser.parse_args()
    print(complexity_section(run(args.full, progress=lambda text: print(f"... {text}", flush=True))))


if __name__ == "__main__":
    main()
