"""pytest-benchmark set-up: which shapes run, one cache of built contenders, speed-ups and memory in the results.

Shape sets (``--bench-shapes`` or SWIN_BENCH_SHAPES): ``standard`` (Swin-T/S and Swin-B stages 1-4; on a GPU
also 384² / window 12 and 800x1216), ``stage1`` (Swin-T stage 1, unshifted and shifted) and ``quick`` (one
small real call). Under ``--benchmark-disable`` (what CI runs: every benchmark once, so none can rot) the
default is ``quick``. SWIN_BENCH_THREADS sets torch's CPU thread count (default: torch's choice, or 1 when the
machine is already busy as the run starts).
"""

from __future__ import annotations

import os

import pytest
import torch

from .contenders import BASELINE, CONTENDERS, PreparedCache, contender_label, cpp_kernel_info
from .machine import busy_warning
from .memory import format_bytes
from .shapes import bench_device, dtypes_for, quick_shapes, standard_shapes, swin_t_stage1
from .workload import LEVELS, PASSES

SHAPE_SETS = ("quick", "stage1", "standard")
PASS_IDS = {"forward": "fwd", "backward": "bwd", "forward+backward": "fwdbwd"}
DTYPE_IDS = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}
RECORDS = pytest.StashKey[list]()


def pytest_addoption(parser):
    group = parser.getgroup("swin-kernels benchmarks")
    group.addoption("--bench-shapes", choices=SHAPE_SETS, default=None,
                    help="shape set (default: standard; quick under --benchmark-disable)")
    group.addoption("--bench-budget", type=float, default=1.0,
                    help="seconds of timed rounds per benchmark (at least 5 rounds, at most 50)")


def pytest_configure(config):
    config.stash[RECORDS] = []
    # torch.compile's start-up touches a deprecated torch.jit helper; not ours to fix, not worth a line per test.
    config.addinivalue_line("filterwarnings", "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
    threads = os.environ.get("SWIN_BENCH_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    elif busy_warning() and not torch.cuda.is_available() and not config.getoption("benchmark_disable", False):
        torch.set_num_threads(1)  # see busy_warning: several threads stall on a shared CPU


def pytest_report_header(config):
    busy = busy_warning()
    kernels = "; ".join(f"{k}: {v}" for k, v in cpp_kernel_info(dtypes_for(bench_device())).items())
    return [f"swin-kernels benchmarks: shape set {shape_set(config)!r}, device {bench_device()}, "
            f"torch threads {torch.get_num_threads()}", kernels] + ([f"warning: {busy}"] if busy else [])


def shape_set(config) -> str:
    chosen = config.getoption("--bench-shapes") or os.environ.get("SWIN_BENCH_SHAPES")
    if chosen:
        if chosen not in SHAPE_SETS:
            raise pytest.UsageError(f"SWIN_BENCH_SHAPES must be one of {SHAPE_SETS}, got {chosen!r}")
        return chosen
    return "quick" if config.getoption("benchmark_disable", False) else "standard"


def bench_shapes(config):
    device = bench_device()
    return {"quick": quick_shapes, "stage1": swin_t_stage1,
            "standard": lambda: standard_shapes(device)}[shape_set(config)]()


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    device = bench_device()
    cases, ids = [], []
    for level in LEVELS:
        for shape in bench_shapes(metafunc.config):
            for dtype in dtypes_for(device):
                for pass_name in PASSES:
                    for key in CONTENDERS:
                        cases.append((level, shape, dtype, pass_name, key))
                        ids.append(f"{level}-{PASS_IDS[pass_name]}-{shape.short_id}-{DTYPE_IDS[dtype]}-{key}")
    metafunc.parametrize("case", cases, ids=ids)


@pytest.fixture(scope="session")
def prepared_cache():
    return PreparedCache(bench_device())


@pytest.fixture(scope="session")
def bench_budget(request) -> float:
    return request.config.getoption("--bench-budget")


@pytest.fixture
def record(request):
    """Append (group, contender label, median seconds, peak bytes) for the terminal summary."""
    return request.config.stash[RECORDS].append


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Each benchmark's speed-up over the reference in its group (same level, shape, dtype and pass)."""
    baseline = {b["group"]: b["stats"]["median"] for b in output_json["benchmarks"]
                if b["extra_info"].get("contender") == BASELINE}
    for bench in output_json["benchmarks"]:
        reference = baseline.get(bench["group"])
        if reference is not None:
            bench["extra_info"]["speedup_vs_reference"] = reference / bench["stats"]["median"]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    records = config.stash.get(RECORDS, [])
    if not records or config.getoption("benchmark_disable", False):
        return
    by_group: dict[str, list] = {}
    for group, key, label, median, peak in records:
        by_group.setdefault(group, []).append((key, label, median, peak))
    write = terminalreporter.write_line
    terminalreporter.section("swin-kernels: speed-up over the reference and peak memory, per group")
    for group, rows in by_group.items():
        reference = next((median for key, _, median, _ in rows if key == BASELINE), None)
        write(group)
        for key, label, median, peak in rows:
            speedup = f"{reference / median:6.2f}x" if reference and median else "     —"
            time_text = f"{median * 1e3:10.3f} ms" if median else "       —     "
            write(f"    {label:45s} {time_text}  {speedup}  peak {format_bytes(peak)}")
