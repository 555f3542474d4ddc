"""Peak memory of one call, counted by the allocator rather than guessed from the process size.

GPU: ``torch.cuda.max_memory_allocated``. CPU: the profiler's allocation events (``profile_memory=True``),
which PyTorch's CPU allocator emits for every tensor it allocates or frees, whether the call is eager,
compiled by inductor or a C++ extension; summed in time order they give the live bytes, whose maximum is
the peak. Both report the peak *above what was live when the call began* (inputs, weights and, for a
backward pass, the activations its forward saved), so it is the memory the call itself needs. On the CPU
the profiler cannot see the release of tensors allocated before it started (a backward freeing saved
activations), so there the figure is the peak of the bytes the call itself allocated; on a GPU such
releases lower the count.
Not counted on the CPU: scratch space that libraries allocate outside PyTorch's allocator (oneDNN/BLAS).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile

MEMORY_EVENT = "[memory]"


def peak_bytes(target: Callable, args: tuple, device: torch.device) -> int:
    """Peak bytes ``target(*args)`` holds above its starting point; its result counts until it returns."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        result = target(*args)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - start
        del result
        return peak
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    # The profiler logs to stderr when it starts and stops, and warns when the call frees a tensor older
    # than the profile (saved activations during a backward); this re-run of an already checked call is
    # silenced so those lines do not flood the output.
    with _silenced_stderr():
        with prof:
            result = target(*args)
            del result
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == MEMORY_EVENT and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


@contextmanager
def _silenced_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def format_bytes(count: float | None) -> str:
    if count is None:
        return "—"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(count) >= size:
            return f"{count / size:.1f} {unit}"
    return f"{int(count)} B"
