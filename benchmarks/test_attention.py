"""Time every contender on every shape, level and pass (pytest-benchmark), with peak memory alongside.

Each case first checks the contender against the reference (output for the forward pass, the input's
gradient for the others), so a fast wrong answer fails instead of being reported. A contender that cannot
run a case here is skipped with its reason.
"""

from __future__ import annotations

import time

import pytest

from .contenders import Unsupported, contender_label, cpp_isa
from .harness import prepare_pass
from .memory import peak_bytes
from .timing import rounds_for, synchronize


def test_attention(benchmark, prepared_cache, bench_budget, record, case):
    level, shape, dtype, pass_name, key = case
    device = prepared_cache.device
    benchmark.group = f"{level} | {shape.label} | {str(dtype).removeprefix('torch.')} | {pass_name}"
    try:
        target, setup, error = prepare_pass(prepared_cache, key, level, shape, dtype, pass_name)
    except Unsupported as reason:
        pytest.skip(str(reason))

    def timed(*args):
        result = target(*args)
        synchronize(device)
        return result

    # Warm-up: one call under the memory profiler (its time, profiler included, only sizes the rounds).
    begin = time.perf_counter()
    peak = peak_bytes(target, setup(), device)
    rounds = rounds_for(time.perf_counter() - begin, budget_s=bench_budget) if benchmark.enabled else 1
    benchmark.pedantic(timed, setup=lambda: (setup(), {}), rounds=rounds)
    assert peak > 0, "every pass allocates its output or gradients: a zero peak means the count missed them"
    label = contender_label(key, dtype, device)
    benchmark.extra_info.update(contender=key, label=label, level=level, pass_name=pass_name,
                                shape=shape.label, dtype=str(dtype), peak_memory_bytes=peak,
                                relative_error_vs_reference=error)
    if key == "cpp":
        benchmark.extra_info["kernel_isa"] = cpp_isa(dtype)
    median = benchmark.stats.stats.median if benchmark.enabled and benchmark.stats else None
    record((benchmark.group, key, label, median, peak))
