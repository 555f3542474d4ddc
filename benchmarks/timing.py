"""Wall-clock timing of one call (CUDA events on a GPU, perf_counter on the CPU) and how many rounds to time."""

from __future__ import annotations

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


def rounds_for(estimate_s: float, *, min_rounds: int = 5, max_rounds: int = 50, budget_s: float = 1.0) -> int:
    """How many timed rounds fit in ``budget_s`` given one call's estimated time."""
    return max(min_rounds, min(max_rounds, int(budget_s / max(estimate_s, 1e-9))))
