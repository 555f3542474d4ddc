"""Run one (contender, level, shape, pass): check it against the reference, time it, count its peak memory."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from .contenders import BASELINE, PreparedCache, Unsupported
from .memory import peak_bytes
from .shapes import BenchShape
from .timing import Timing, interleaved_times, rounds_for
from .workload import pass_callables

# Largest error accepted against the reference, relative to the reference's largest magnitude.
RELATIVE_TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}


PROBLEM_PREFIXES = ("WRONG RESULT:", "FAILED:")  # how run_group marks contenders that misbehaved


class WrongResult(AssertionError):
    """A contender's output or input gradient disagrees with the reference."""


@dataclass
class PassResult:
    contender: str
    level: str
    shape: BenchShape
    dtype: torch.dtype
    pass_name: str
    timing: Timing | None = None
    peak_bytes: int | None = None
    error: float | None = None  # relative to the reference; None for the reference itself
    skipped: str | None = None

    @property
    def key(self) -> tuple:
        return self.level, self.shape, self.dtype, self.pass_name


def prepare_pass(cache: PreparedCache, key: str, level: str, shape: BenchShape, dtype: torch.dtype,
                 pass_name: str):
    """(target, setup) of a pass, after one checked call (which also pays any compile time).

    Raises Unsupported when the contender cannot run it, WrongResult when its result is wrong.
    Returns the relative error against the reference as the third item (None for the reference).
    """
    prepared = cache.prepared(key, level, shape, dtype)
    workload = cache.workload(shape, dtype)
    target, setup = pass_callables(prepared, pass_name, workload.grad_out)
    try:
        value = target(*setup())
    except NotImplementedError as error:  # e.g. an operator without a backward on this device
        raise Unsupported(f"{type(error).__name__}: {error}") from error
    error = None
    if key != BASELINE:
        expected_out, expected_grad = cache.expected(level, shape, dtype)
        actual, expected = (value, expected_out) if pass_name == "forward" else (value[0], expected_grad)
        error = relative_error(actual, expected)
        if not error <= RELATIVE_TOLERANCE[dtype]:
            what = "output" if pass_name == "forward" else "input gradient"
            raise WrongResult(f"{key} {level} {shape.label} {pass_name}: {what} differs from the reference by "
                              f"{error:.2e} (relative), tolerance {RELATIVE_TOLERANCE[dtype]:.0e}")
    return target, setup, error


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    if actual.shape != expected.shape:
        raise WrongResult(f"shape {tuple(actual.shape)} != reference {tuple(expected.shape)}")
    scale = expected.detach().double().abs().max().item() or 1.0
    return (actual.detach().double() - expected.detach().double()).abs().max().item() / scale


def run_group(cache: PreparedCache, keys: list[str], level: str, shape: BenchShape, dtype: torch.dtype,
              pass_name: str, budget_s: float = 2.0, min_rounds: int = 5, max_rounds: int = 30,
              on_failure=None) -> list[PassResult]:
    """Check, time and measure the peak memory of one pass for several contenders, side by side.

    Every contender is checked against the reference (a call that also pays any compile time), then warmed up
    by a call that measures its peak memory; then the timed rounds interleave
    the contenders (one call each per round, in a rotating order), so a burst of load from elsewhere on the
    machine falls on all of them rather than on whichever ran at that moment. Times are per-contender
    medians over the rounds. A contender that cannot run is skipped with its reason; one whose result is wrong,
    or that crashes, is reported through ``on_failure(result, message)`` and not timed.
    """
    results, runnable = [], []
    for key in keys:
        result = PassResult(key, level, shape, dtype, pass_name)
        results.append(result)
        try:
            target, setup, result.error = prepare_pass(cache, key, level, shape, dtype, pass_name)
        except Unsupported as reason:
            result.skipped = str(reason)
            continue
        except WrongResult as failure:
            result.skipped = f"WRONG RESULT: {failure}"
            if on_failure is not None:
                on_failure(result, str(failure))
            continue
        except Exception as error:  # a crashing contender is reported, and the others still run
            result.skipped = f"FAILED: {type(error).__name__}: {error}"
            if on_failure is not None:
                on_failure(result, f"{key} {level} {shape.label} {pass_name}: {result.skipped}")
            continue
        runnable.append((result, target, setup))
    if not runnable:
        return results
    # Warm-up: one call each under the memory profiler (its time, profiler included, only sizes the rounds).
    estimate = 0.0
    for result, target, setup in runnable:
        begin = time.perf_counter()
        result.peak_bytes = peak_bytes(target, setup(), cache.device)
        estimate += time.perf_counter() - begin
    rounds = rounds_for(estimate, min_rounds=min_rounds, max_rounds=max_rounds, budget_s=budget_s)
    samples = interleaved_times([(target, setup) for _, target, setup in runnable], rounds, cache.device)
    for (result, _, _), times in zip(runnable, samples):
        result.timing = Timing(statistics.median(times), min(times), len(times))
    return results
