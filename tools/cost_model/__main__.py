"""python -m tools.cost_model [--arch 90] [--json F] [--markdown F] [--check-budgets] [--update-budgets]
[--calibrate] [--source-root DIR] [--only NAME] [--no-cuda | --no-triton]"""

from __future__ import annotations

import os

os.environ.pop("TRITON_INTERPRET", None)  # real compilation: decided before triton is imported

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from .launches import ROOT, load_triton_ops  # noqa: E402

BUDGETS = Path(__file__).with_name("budgets.json")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="static GPU cost model of the Triton and CUDA kernels")
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--json", default=str(ROOT / "results" / "cost_model.json"))
    parser.add_argument("--markdown", default=str(ROOT / "results" / "cost_model.md"))
    parser.add_argument("--check-budgets", action="store_true", help="exit 1 when a kernel exceeds its budget")
    parser.add_argument("--update-budgets", action="store_true", help="rewrite budgets.json from this run")
    parser.add_argument("--calibrate", action="store_true",
                        help="fit the issue efficiency on the measured stage-1 forward (of the kernels measured)")
    parser.add_argument("--source-root", default=str(ROOT), help="the tree whose kernels are modelled")
    parser.add_argument("--only", action="append", help="model only this workload (repeatable)")
    parser.add_argument("--no-cuda", action="store_true", help="leave out the CUDA kernels (csrc/cuda)")
    parser.add_argument("--no-triton", action="store_true",
                        help="model the CUDA kernels only (budgets: only the CUDA entries are checked or written)")
    parser.add_argument("--jobs", type=int, default=1, help="accepted for symmetry; compiles run one at a time")
    args = parser.parse_args(argv)
    started = time.time()
    load_triton_ops(Path(args.source_root))
    from . import analyse, budgets, calibrate, cuda_kernels, report, workloads

    chosen = [w for w in workloads.all_workloads() if not args.only or w.name in args.only]
    results = []
    for w in [] if args.no_triton else chosen:
        print(f"[{time.time() - started:.0f} s] {w.name}", file=sys.stderr, flush=True)
        results.append(analyse.analyse(w, args.arch, Path(args.source_root)))
    cuda = {} if args.no_cuda else cuda_kernels.analyse(args.arch, Path(args.source_root), chosen)
    if not cuda and not args.no_cuda:
        print("cost model: nvcc not found, the CUDA kernels are left out", file=sys.stderr)
    if args.calibrate:
        calibrate.write(results)
    table = report.build(results, chosen)
    text = report.markdown(table) + cuda_kernels.markdown(cuda, results)
    print(text)
    for path, content in ((args.markdown, text), (args.json, json.dumps({"rows": table, "raw": results, "cuda": cuda,
                                                    "cuda_vs_triton": cuda_kernels.comparison(cuda, results)},
                                                   indent=1))):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(content)
    status = 0
    if args.update_budgets:
        budgets.write(BUDGETS, results, args.arch, cuda)
        print(f"budgets written to {BUDGETS}")
    if args.check_budgets:
        failures = budgets.check(BUDGETS, results, args.arch, cuda)
        for failure in failures:
            print(f"BUDGET EXCEEDED: {failure}", file=sys.stderr)
        status = 1 if failures else 0
        if not failures:
            print("every kernel within its recorded budget")
    print(f"cost model: {len(chosen)} workloads in {time.time() - started:.0f} s", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
