"""Interleaved timing on a GPU with CUDA events and a flushed L2 cache (perf_counter on the CPU, for dry runs).

Each round runs every contender once, in a rotating order; before each timed call a buffer twice the size of
the L2 cache is zeroed, so no contender finds its inputs in L2 (Swin-T's stage-4 qkv map at batch 128 is 29 MB,
about half an H100's L2). The host does not wait between calls: the events time what the GPU spends on the call,
including any gaps when the host launches its kernels more slowly than the GPU runs them. Medians over rounds.
"""

from __future__ import annotations

from typing import Callable

import torch

from .timing import interleaved_times

Target = tuple[Callable, Callable[[], tuple]]  # (target, setup): the timed call is target(*setup())


class L2Flush:
    def __init__(self, device: torch.device):
        self.buffer = None
        if device.type == "cuda":
            l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 64 << 20
            self.buffer = torch.empty(2 * l2, dtype=torch.uint8, device=device)

    def __call__(self) -> None:
        if self.buffer is not None:
            self.buffer.zero_()


def interleaved_gpu_times(targets: list[Target], rounds: int, device: torch.device,
                          flush: L2Flush | None = None) -> list[list[float]]:
    """Seconds of each target over ``rounds`` interleaved rounds."""
    if device.type != "cuda":
        return interleaved_times(targets, rounds, device)
    flush = flush or L2Flush(device)
    samples: list[list[float]] = [[] for _ in targets]
    order = list(range(len(targets)))
    torch.cuda.synchronize(device)
    for r in range(rounds):
        first = r % len(order)
        events = []
        for i in order[first:] + order[:first]:
            target, setup = targets[i]
            args = setup()
            flush()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            target(*args)
            end.record()
            events.append((i, start, end))
        torch.cuda.synchronize(device)  # once per round: bounded queue, and the round's events are complete
        for i, start, end in events:
            samples[i].append(start.elapsed_time(end) / 1e3)
    return samples


def rounds_within(estimate_s: float, budget_s: float, low: int, high: int) -> int:
    return max(low, min(high, int(budget_s / max(estimate_s, 1e-6))))
