"""make demo: check every backend here against the reference, compare speed and memory, study complexity.

    python -m benchmarks.demo [--full] [--out results] [--threads N]

Default (under three minutes on a 2-core CPU): every backend checked against the fp64 reference; the Swin-T stage-1
call (B=8, 56x56, C=96, 3 heads, M=7, shifted and unshifted), attention core and branch, forward and
forward+backward, in fp32 and bf16 on the CPU (bf16 and fp16 on a GPU) for every contender that needs no
compilation on the CPU (torch.compile and flex_attention rows need minutes of inductor code generation there);
the complexity study up to 70x70 maps; one fp32 inference row per end-to-end model (HF, timm, torchvision). On
the CPU each section has a share of a time budget (--time-budget, default 150 s): a section that spends its share
stops and the report says what it left out; progress lines show an estimate of the time left. --full (no budget):
fp16 and the compiled contenders on the CPU, every Swin-T/S and Swin-B stage shape (plus 384² and 800x1216 on a
GPU), the backward pass alone too, maps up to 112x112, and end to end the training step, bf16 autocast and
compiled rows. Writes <out>/REPORT.md, the plots beside it and <out>/results.json, and prints a summary.
Exits with 1 when a swin_kernels backend fails a check or gives a wrong result (peers' problems are reported only).
"""

from __future__ import annotations

import argparse
import importlib
import json
import traceback
from pathlib import Path

import torch

from swin_kernels.backends import BACKEND_NAMES

from . import complexity
from .comparison import run_comparison
from .contenders import cpp_kernel_info
from .correctness import check_all
from .machine import busy_warning, load_average, machine_info
from .progress import Progress
from .report import checks_section, comparison_section, comparison_table, complexity_section, machine_section
from .contenders import CONTENDERS
from .shapes import bench_device, dtypes_for, standard_shapes, swin_t_stage1
from .workload import LEVEL_TITLES, LEVELS, PASSES

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TIME_BUDGET_S = 150.0  # the default CPU run, all sections (start-up and the last step come on top); --full: none
# each section's share of the budget (the checks are not budgeted: every backend is always checked)
BUDGET_SHARES = {"checks": 0.06, "comparison": 0.40, "complexity": 0.20, "end-to-end": 0.34}
COMPILING_CONTENDERS = ("compiled", "flex")  # inductor code generation: minutes on a CPU; --full only there


def end_to_end_section(full: bool, progress, out_of_time=None) -> str:
    """The integration benchmarks' own section (benchmarks/end_to_end.py), or a line saying why it is absent."""
    try:
        module = importlib.import_module("benchmarks.end_to_end")
    except ModuleNotFoundError as error:
        if error.name != "benchmarks.end_to_end":
            raise
        return "## End-to-end\n\n_benchmarks/end_to_end.py is missing, so there is no end-to-end section._"
    try:
        return module.report_section(full=full, progress=progress, out_of_time=out_of_time)
    except Exception:  # one failing section must not lose the rest of the report
        last = traceback.format_exc().strip().splitlines()[-1]
        return f"## End-to-end\n\n**The end-to-end section failed:** `{last}`"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="every stage shape and larger maps (long)")
    parser.add_argument("--out", type=Path, default=REPO / "results", help="directory for REPORT.md and plots")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, or 1 when the machine is already busy)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds of timed rounds per comparison group (default 1, --full 4)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help=f"seconds for the whole run, shared among its sections (default on a CPU "
                             f"{DEFAULT_TIME_BUDGET_S:.0f}; none with --full or on a GPU; 0: none)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    busy = busy_warning()
    if args.threads:
        torch.set_num_threads(args.threads)
    elif busy and not torch.cuda.is_available():  # GPU timings do not depend on the CPU threads
        torch.set_num_threads(1)
        busy += "; this run therefore used 1 torch thread (choose with --threads)"
    if busy:
        busy += ". Ratios between contenders, timed in interleaved rounds, hold up better than absolute times"
    device = bench_device()
    total = args.time_budget
    if total is None:
        total = 0.0 if args.full or device.type == "cuda" else DEFAULT_TIME_BUDGET_S
    plan = {name: share * total for name, share in BUDGET_SHARES.items()} if total > 0 else {}
    progress = Progress(plan=plan)
    progress.begin("checks")
    info = machine_info()
    info.update(cpp_kernel_info(dtypes_for(device)))
    progress(f"swin-kernels demo on {info['CPU']} ({info['cores']} cores, {info['torch CPU threads']} torch threads), "
             f"GPU: {info['GPU']}, torch {info['torch']}")
    progress(f"cpp kernel builds: {info.get('cpp kernel builds', info.get('cpp kernels'))}")
    if busy:
        progress(f"WARNING: {busy}")

    checks = check_all(progress=progress)
    ran = [c for c in checks if not c.skipped]
    failed = [c for c in ran if not c.passed]
    for backend in dict.fromkeys(c.backend for c in ran):
        mine = [c for c in ran if c.backend == backend]
        worst = ", ".join(
            f"{str(dtype).removeprefix('torch.')} {max(c.relative_error for c in mine if c.dtype == dtype):.1e}"
            for dtype in dict.fromkeys(c.dtype for c in mine))
        progress(f"  {backend}: {sum(c.passed for c in mine)}/{len(mine)} checks pass; largest relative error {worst}")

    progress.begin("comparison")
    shapes = standard_shapes(device) if args.full else swin_t_stage1()
    quick_cpu = not args.full and device.type != "cuda"
    dtypes = [torch.float32, torch.bfloat16] if quick_cpu else dtypes_for(device)
    keys = [key for key in CONTENDERS if not (quick_cpu and key in COMPILING_CONTENDERS)]
    failures = []  # (contender key, message)

    def on_failure(result, message):
        failures.append((result.contender, message))
        progress(f"  PROBLEM: {message}")

    budget = args.budget or (4.0 if args.full else 1.0)
    passes = PASSES if args.full else ("forward", "forward+backward")
    not_run: list[str] = []
    results = run_comparison(shapes, dtypes, device, passes, budget_s=budget, progress=progress,
                             on_failure=on_failure, keys=keys, out_of_time=progress.out_of_time, not_run=not_run,
                             min_rounds=3 if quick_cpu else 5)
    if not_run:
        progress(f"comparison: out of its time budget, {len(not_run)} groups left out")

    args.out.mkdir(parents=True, exist_ok=True)
    progress.begin("complexity")
    study = complexity.run(full=args.full, progress=progress, plot_dir=args.out, out_of_time=progress.out_of_time)
    progress.begin("end-to-end")
    progress("end-to-end section")
    e2e = end_to_end_section(args.full, progress, out_of_time=progress.out_of_time)

    info["load average (1/5/15 min) at the end"] = load_average()
    sections = [
        "# swin-kernels benchmark report",
        f"Produced by `python -m benchmarks.demo{' --full' if args.full else ''}` (`make demo`) in "
        f"{progress.elapsed / 60:.1f} min ({progress.elapsed:.0f} s"
        + (f"; time budget {total:.0f} s" if total > 0 else "") + "). Numbers are from this one run on the machine "
        "below; ratios between contenders measured side by side are the figures to trust, absolute times depend on "
        "the machine and its load."
        + ("" if args.full else " On the CPU, fp16, the compiled contenders (torch.compile, flex_attention), every "
           "stage shape, larger maps and the end-to-end training, bf16 and compiled rows come with `--full` "
           "(`make demo DEMO_ARGS=--full`).")
        + (f"\n\n**Warning:** {busy}." if busy else ""),
        machine_section(info), checks_section(checks), comparison_section(results, torch.get_num_threads(), not_run),
        complexity_section(study), e2e,
    ]
    (args.out / "REPORT.md").write_text("\n\n".join(sections) + "\n")
    write_json(args.out / "results.json", info, results, study)

    print_summary(results, study, failed, [message for _, message in failures], args.out)
    print(f"took {progress.elapsed / 60:.1f} min ({progress.elapsed:.0f} s)")
    return 1 if failed or any(key in BACKEND_NAMES for key, _ in failures) else 0


def write_json(path: Path, info, results, study) -> None:
    rows = [{"contender": r.contender, "level": r.level, "shape": r.shape.label, "dtype": str(r.dtype),
             "pass": r.pass_name, "median_s": r.timing.median_s if r.timing else None,
             "repeats": r.timing.repeats if r.timing else None, "peak_bytes": r.peak_bytes,
             "relative_error": r.error, "skipped": r.skipped} for r in results]
    fits = [vars(f) for f in study.fits]
    series = [vars(s) for s in study.series]
    path.write_text(json.dumps({"machine": info, "comparison": rows, "complexity": {"fits": fits, "series": series,
                                "crossovers": study.crossovers}}, indent=1))


def print_summary(results, study, failed_checks, wrong, out: Path) -> None:
    print("\n=== Summary ===")
    print("backend checks: " + ("all pass" if not failed_checks else f"{len(failed_checks)} FAILED"))
    for level in LEVELS:
        if any(r.level == level for r in results):
            print(f"\n{LEVEL_TITLES[level]}:")
            print(comparison_table(results, level)[0])
    if wrong:
        print("\nPROBLEMS (wrong results or crashes, not timed):")
        for message in wrong:
            print("  " + message)
    print("\ncomplexity slopes (time / memory, formula) over maps >= "
          f"{study.fits[0].fit_from_tokens if study.fits else '?'} tokens:")
    for f in study.fits:
        print(f"  {f.name:34s} {f.time_slope:5.2f} / {f.memory_slope:5.2f}   (formula {f.flop_slope:.2f})")
    ok = all(row.matches for row in study.flops)
    print(f"FLOP counts vs formulas: {'exact everywhere' if ok else 'MISMATCH'}; worked example saving "
          f"{study.example.counted_saving_macs:.3e} multiply-adds (formula {study.example.formula_saving_macs:.3e})")
    for name, sentence in study.crossovers.items():
        print(f"  crossover, {name}: {sentence}")
    print(f"\nreport: {out / 'REPORT.md'}")


if __name__ == "__main__":
    raise SystemExit(main())
