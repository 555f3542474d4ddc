"""Per-kernel budgets: instructions per warp per program and registers, per (kernel, specialisation, arch); the
CUDA kernels' static counts and their per-workload dynamic counts too.

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


def _cuda_entries(cuda: dict, arch: int):
    """The CUDA kernels (cuda_kernels.analyse): every kernel's static count, and per workload the dynamic count of
    each kernel a cuda-backend call launches (the largest where one kernel is launched twice)."""
    for k in (cuda or {}).get("static", []):
        yield (f"cuda {k['kernel']} ({k['file']}) sm_{arch} static",
               {"instructions": k["static_instructions"], "registers": k["registers"]})
    dynamic: dict = {}
    for w in (cuda or {}).get("workloads", []):
        for part in w.get("parts", {}).values():
            for k in part["kernels"]:
                key = f"cuda {k['kernel']} sm_{arch} @ {w['workload']}"
                seen = dynamic.get(key, {"instructions": 0, "registers": 0})
                dynamic[key] = {"instructions": max(seen["instructions"], k["instructions"]),
                                "registers": max(seen["registers"], k["registers"])}
    yield from dynamic.items()


def write(path, results: list[dict], arch: int, cuda: dict | None = None) -> None:
    """Records the counts of this run, keeping every other entry; this run's entries replace those of the
    workloads it modelled (Triton: each workload's; CUDA: static, all of them, dynamic, the workloads of this run),
    so that a kernel or specialisation that no longer runs leaves no budget behind."""
    data = json.loads(path.read_text()) if path.exists() else {}
    modelled_triton = tuple(f"sm_{arch} @ {r['workload']}" for r in results)
    data = {key: value for key, value in data.items()
            if key.startswith("cuda ") or not key.endswith(modelled_triton)}
    data.update(dict(_entries(results, arch)))
    if cuda:
        modelled = tuple(f" @ {w['workload']}" for w in cuda.get("workloads", []))
        data = {key: value for key, value in data.items()
                if not (key.startswith("cuda ") and f"sm_{arch}" in key
                        and (key.endswith(" static") or key.endswith(modelled)))}
    data.update(dict(_cuda_entries(cuda, arch)))
    path.write_text(json.dumps(dict(sorted(data.items())), indent=1) + "\n")


def check(path, results: list[dict], arch: int, cuda: dict | None = None) -> list[str]:
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
