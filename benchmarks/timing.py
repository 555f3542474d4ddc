"""Wall-clock timing: warm-up, then the median of repeats (CUDA events on a GPU, perf_counter on the CPU)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Timing:
    median_s: float
    min_s: float
    repeats: int

    @property
    def median_ms(self) -> float:
        return self.median_s * 1e3


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(target: Callable, args: tuple, device: torch.device) -> float:
    """Seconds one call of ``target(*args)`` takes, all queued device work included."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        synchronize(device)
        start.record()
        target(*args)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    target(*args)
    return time.perf_counter() - begin


def measure(target: Callable, setup: Callable[[], tuple] | None, device: torch.device, *, warmup: int = 2,
            min_repeats: int = 5, max_repeats: int = 50, budget_s: float = 1.0) -> Timing:
    """Median over repeats of ``target(*setup())``; ``setup`` (untimed) runs before every call.

    After ``warmup`` calls, repeats as many calls as fit in ``budget_s`` (estimated from the warm-up),
    between ``min_repeats`` and ``max_repeats``.
    """
    setup = setup or (lambda: ())
    estimate = float("inf")
    for _ in range(warmup):
        estimate = time_once(target, setup(), device)
    repeats = max(min_repeats, min(max_repeats, int(budget_s / max(estimate, 1e-9))))
    samples = [time_once(target, setup(), device) for _ in range(repeats)]
    return Timing(statistics.median(samples), min(samples), repeats)


def rounds_for(estimate_s: float, *, min_rounds: int = 5, max_rounds: int = 50, budget_s: float = 1.0) -> int:
    """How many timed rounds fit in ``budget_s`` given one call's estimated time."""
    return max(min_rounds, min(max_rounds, int(budget_s / max(estimate_s, 1e-9))))
