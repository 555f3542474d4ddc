"""Per-kernel budgets: instructions per warp per program and registers, per (kernel, specialisation, arch).

Deterministic for the pinned Triton and nvcc: a regression guard, not a timing. A kernel compiled to more
instructions or registers than recorded fails the check; --update-budgets records the present counts."""

from __future__ import annotations

import json


def _entries(results: list[dict], arch: int):
    for r in results:
        for part in r["parts"].values():
            for k in part["kernels"]:
                key = f"{k['kernel']} [{k['specialisation']}] sm_{arch} @ {r['workload']}"
                yield key, {"instructions": k["instructions"], "registers": k["registers"]}


def _cuda_entries(cuda: list[dict], arch: int):
    for k in cuda:
        yield (f"cuda {k['kernel']} ({k['file']}) sm_{arch} static",
               {"instructions": k["static_instructions"], "registers": k["registers"]})


def write(path, results: list[dict], arch: int, cuda: list[dict] = ()) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(dict(_entries(results, arch)))
    data.update(dict(_cuda_entries(cuda, arch)))
    path.write_text(json.dumps(dict(sorted(data.items())), indent=1) + "\n")


def check(path, results: list[dict], arch: int, cuda: list[dict] = ()) -> list[str]:
    """One message per kernel over its budget, or without one."""
    budgets = json.loads(path.read_text()) if path.exists() else {}
    failures = []
    for key, got in [*_entries(results, arch), *_cuda_entries(cuda, arch)]:
        budget = budgets.get(key)
        if budget is None:
            failures.append(f"{key}: no budget recorded (run python -m tools.cost_model --update-budgets)")
            continue
        for what in ("instructions", "registers"):
            if got[what] > budget[what]:
                failures.append(f"{key}: {got[what]} {what}, budget {budget[what]}")
    return failures
