"""The demo's side-by-side comparison: every contender on a few shapes, both levels, all three passes."""

from __future__ import annotations

from typing import Callable

import torch

from .contenders import CONTENDERS, PreparedCache
from .harness import PassResult, run_group
from .shapes import BenchShape
from .workload import LEVELS, PASSES


def run_comparison(shapes: list[BenchShape], dtypes: list[torch.dtype], device: torch.device,
                   passes=PASSES, budget_s: float = 2.0, progress=None, on_failure=None, keys=None,
                   out_of_time: Callable[[], bool] | None = None, not_run: list[str] | None = None,
                   min_rounds: int = 5) -> list[PassResult]:
    """``keys``: the contenders (default: all). ``out_of_time()``: asked before each group; once true the rest
    are not run, and their labels are appended to ``not_run``."""
    cache = PreparedCache(device)
    keys = list(CONTENDERS) if keys is None else list(keys)
    # dtype-major, both levels of a shape and pass together: a run cut short by its time budget loses whole
    # (dtype, shape) rows of both tables, never a whole table
    groups = [(level, shape, dtype, pass_name) for dtype in dtypes for shape in shapes for pass_name in passes
              for level in LEVELS]
    results = []
    for i, (level, shape, dtype, pass_name) in enumerate(groups, 1):
        label = f"{level} | {shape.label} | {str(dtype).removeprefix('torch.')} | {pass_name}"
        if out_of_time is not None and out_of_time():
            if not_run is not None:
                not_run.append(label)
            continue
        if progress:
            progress(f"[{i}/{len(groups)}] {label}")
        results += run_group(cache, keys, level, shape, dtype, pass_name, budget_s=budget_s,
                             on_failure=on_failure, min_rounds=min_rounds)
    return results
