"""The demo's side-by-side comparison: every contender on a few shapes, both levels, all three passes."""

from __future__ import annotations

import torch

from .contenders import CONTENDERS, PreparedCache
from .harness import PassResult, run_group
from .shapes import BenchShape
from .workload import LEVELS, PASSES


def run_comparison(shapes: list[BenchShape], dtypes: list[torch.dtype], device: torch.device,
                   passes=PASSES, budget_s: float = 2.0, progress=None, on_failure=None) -> list[PassResult]:
    cache = PreparedCache(device)
    groups = [(level, shape, dtype, pass_name) for level in LEVELS for shape in shapes for dtype in dtypes
              for pass_name in passes]
    results = []
    for i, (level, shape, dtype, pass_name) in enumerate(groups, 1):
        if progress:
            progress(f"[{i}/{len(groups)}] {level} | {shape.label} | {str(dtype).removeprefix('torch.')} | {pass_name}")
        results += run_group(cache, list(CONTENDERS), level, shape, dtype, pass_name, budget_s=budget_s,
                             on_failure=on_failure)
    return results
