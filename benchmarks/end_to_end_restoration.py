"""End to end image restoration: spandrel's SwinIR patched by swin_kernels.patch against unpatched, side by side.

SwinIR runs window attention over every pixel of the image (window 8, head_dim 30 in its classical
configuration), so it is where a fused window attention matters most. The measured model is SwinIR's classical
layout shrunk to fit a shared CPU: embed_dim 180, 6 heads (head_dim 30), window 8, ``depths`` residual groups of
``blocks`` blocks, x2 pixel-shuffle, on a ``size`` x ``size`` image. Eager inference, fp32 and bf16 autocast;
both contenders are the same weights and inputs, timed in interleaved rounds (medians).

    python -m benchmarks.end_to_end_restoration [--size 64] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
from dataclasses import dataclass

import torch

import swin_kernels

from .timing import interleaved_times


@dataclass(frozen=True)
class RestorationResult:
    precision: str
    backend: str
    unpatched_ms: float
    patched_ms: float
    difference: float  # largest |patched - unpatched| over the largest |unpatched|

    @property
    def speedup(self) -> float:
        return self.unpatched_ms / self.patched_ms


def swinir(groups: int = 2, blocks: int = 2, embed_dim: int = 180, heads: int = 6, window: int = 8,
           seed: int = 0) -> torch.nn.Module:
    from spandrel.architectures.SwinIR.__arch.SwinIR import SwinIR

    torch.manual_seed(seed)
    return SwinIR(img_size=64, embed_dim=embed_dim, depths=[blocks] * groups, num_heads=[heads] * groups,
                  window_size=window, upscale=2, upsampler="pixelshuffle", resi_connection="1conv").eval()


def measure(size: int = 64, rounds: int = 5, backend: str = "auto", model: torch.nn.Module | None = None,
            precisions=("fp32", "bf16 autocast")) -> list[RestorationResult]:
    """Unpatched vs patched inference of one image, per precision."""
    model = swinir() if model is None else model
    patched = swin_kernels.patch(copy.deepcopy(model), backend=backend)
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    results = []
    for precision in precisions:
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16 autocast"
                    else contextlib.nullcontext())

        def infer(m):
            with torch.inference_mode(), autocast:
                return m(image).float()

        expected, got = infer(model), infer(patched)  # also the warm-up
        difference = ((got - expected).abs().max() / expected.abs().max()).item()
        times = interleaved_times([(infer, lambda: (model,)), (infer, lambda: (patched,))], rounds,
                                  torch.device("cpu"))
        results.append(RestorationResult(precision, backend, 1e3 * statistics.median(times[0]),
                                         1e3 * statistics.median(times[1]), difference))
    return results


def table(results: list[RestorationResult], size: int) -> str:
    rows = [f"SwinIR x2 (embed 180, head_dim 30, window 8) on a {size}x{size} image, eager inference, CPU",
            "| precision | unpatched ms | patched ms | speed-up | max rel. difference |", "|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r.precision} | {r.unpatched_ms:.1f} | {r.patched_ms:.1f} | {r.speedup:.2f}x | "
                    f"{r.difference:.1e} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    print(table(measure(args.size, args.rounds, args.backend), args.size))


if __name__ == "__main__":
    main()
