"""Counts of every kernel a workload's call launches: record, compile, disassemble, count, bytes."""

from __future__ import annotations

from . import hardware, sass, traffic, trips, triton_build
from .launches import ROOT, record_call


def kernel_record(launch, workload, arch: int = 90) -> dict:
    built = triton_build.build(launch, arch)
    instructions = sass.parse(built["sass"])
    loops = sass.find_loops(instructions)
    notes = trips.assign_trips(loops, instructions, launch.fn, launch.named_args())
    counts = sass.count(instructions, loops)
    warps = built["num_warps"]
    return {"kernel": launch.kernel, "arch": arch, "grid": list(launch.grid), "programs": launch.programs,
            "warps": warps, "registers": built["registers"], "spills": built["spills"], "shared": built["shared"],
            "ctas_per_sm": hardware.ctas_per_sm(built["registers"], built["shared"], warps),
            "instructions": counts.dynamic, "static_instructions": counts.static, "tensor_core": counts.tensor_core,
            "loops": notes, "bytes": traffic.kernel_bytes(launch, workload),
            "specialisation": specialisation(launch)}


def specialisation(launch) -> str:
    """The constexprs that select the compiled variant, compactly (the budget key)."""
    c = launch.constexprs
    keys = [k for k in sorted(c) if k.isupper()]
    return ",".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in ((k, c[k]) for k in keys))


def analyse(workload, arch: int = 90, source_root=ROOT) -> dict:
    calls = record_call(workload, source_root, arch)
    out = {"workload": workload.name, "parts": {}}
    for part, launches in calls.items():
        out["parts"][part] = {"kernels": [kernel_record(l, workload, arch) for l in launches],
                              "floor_bytes": traffic.floor_bytes(workload, part)}
    return out
