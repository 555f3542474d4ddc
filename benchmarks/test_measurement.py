"""The timer and the allocator-based peak memory counter, on calls whose answers are known."""

from __future__ import annotations

import time

import torch

from .memory import format_bytes, peak_bytes
from .timing import interleaved_times, rounds_for, time_once

CPU = torch.device("cpu")
MIB = 2**20


def test_peak_counts_tensors_alive_at_once_not_their_sum():
    def call():
        a = torch.ones(MIB // 4)  # 1 MiB of float32
        b = torch.ones(2 * MIB // 4)  # 2 MiB, a still alive: 3 MiB
        del a, b
        c = torch.ones(MIB // 4)  # 1 MiB after both were freed
        return c

    peak = peak_bytes(call, (), CPU)
    assert 3 * MIB <= peak < 3 * MIB + 4096


def test_peak_is_measured_above_what_existed_before_the_call():
    existing = torch.ones(8 * MIB // 4)

    def call():
        return existing + 1  # allocates one 8 MiB result

    peak = peak_bytes(call, (), CPU)
    assert 8 * MIB <= peak < 8 * MIB + 4096


def test_peak_sees_allocations_inside_a_compiled_graph():
    # inductor allocates its buffers without going through Python-level torch ops; the allocator still sees them
    compiled = torch.compile(lambda x: (x * 2).sum(dim=0) + x.mean(), dynamic=False)
    x = torch.randn(256, 1024)
    compiled(x)
    assert peak_bytes(compiled, (x,), CPU) >= 1024 * 4


def test_time_once_times_the_call():
    seconds = time_once(time.sleep, (0.02,), CPU)
    assert 0.02 <= seconds < 1.0


def test_rounds_fit_the_budget_within_bounds():
    assert rounds_for(0.1, budget_s=1.0) == 10
    assert rounds_for(10.0, budget_s=1.0) == 5
    assert rounds_for(1e-6, budget_s=1.0) == 50


def test_interleaved_rounds_rotate_the_order_and_time_every_target_each_round():
    order, rounds_done = [], []
    targets = [(order.append, lambda name=name: (name,)) for name in "abc"]
    samples = interleaved_times(targets, 4, CPU, on_round=rounds_done.append)
    assert order == list("abc" "bca" "cab" "abc")
    assert rounds_done == [1, 2, 3, 4]
    assert [len(times) for times in samples] == [4, 4, 4]
    assert all(t >= 0.0 for times in samples for t in times)


def test_format_bytes():
    assert format_bytes(3 * MIB) == "3.0 MiB"
    assert format_bytes(512) == "512 B"
    assert format_bytes(None) == "—"
