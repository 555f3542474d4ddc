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


def interleaved_times(targets: list[tuple[Callable, Callable[[], tuple]]], rounds: int, device: torch.device,
                      on_round: Callable[[int], None] | None = None) -> list[list[float]]:
    """Seconds of each ``target(*setup())`` over ``rounds`` rounds of one call each, in a rotating order.

    Interleaving puts a burst of load from elsewhere on the machine on every target alike, rather than on
    whichever happened to be running then. ``on_round(r)`` is called after round r (1-based), e.g. for progress.
    """
    samples: list[list[float]] = [[] for _ in targets]
    order = list(range(len(targets)))
    for r in range(rounds):
        first = r % len(order)
        for i in order[first:] + order[:first]:
            target, setup = targets[i]
            samples[i].append(time_once(target, setup(), device))
        if on_round is not None:
            on_round(r + 1)
    return samples
