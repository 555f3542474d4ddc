"""`make gpu-check`: what a lent GPU machine (no network, its own torch) should check, within a time budget.

    python tools/gpu_check.py [--budget 480] [--out DIR] [--python PY] [--stages ...]

Run as a file, standard library only, so that a report is written even when the package fails to import with
that machine's torch. It never creates a virtual environment or asks a package index: the extension is built in
place against the torch that is there, and everything imports the package from the source tree (PYTHONPATH).
Stages, each in a subprocess with a time limit inside the budget; results are written the moment a stage ends:

  environment  GPU, torch, nvcc, compute-sanitizer (gpu_probe.py)
  build        `python setup.py build_ext --inplace` for this GPU's compute capability (SASS + PTX)
  tests        pytest on the GPU, one process per test file; tests/test_triton.py starts during the build with
               the extension disabled (it does not need it), the others once the build is done
  sanitizer    compute-sanitizer memcheck and racecheck of sanitize_kernels.py, beside the tests
  benchmarks   benchmarks/gpu_bench.py alone on the GPU with what is left of the budget; a warm-up run fills the
               compile caches beside the tests. Without a GPU: a dry run on the CPU (code path only)

Output in $OUT when set, else results/gpu/: REPORT.md, summary.json, console.log, logs.tar.gz (every log and
junit file), bench_rows.jsonl, bench.png: at most 8 files. Exit status 1 when a stage failed (build error,
failing test, sanitizer error, a benchmark contender computing a wrong result); stages skipped or cut by their
time limit are reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the sibling modules are plain modules
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_jobs import Job, wait_all
    from gpu_results import PytestCounts, Stage, bundle, parse_sanitizer, read_test_counts, write_report, \
        write_summary
else:
    from .gpu_jobs import Job, wait_all
    from .gpu_results import PytestCounts, Stage, bundle, parse_sanitizer, read_test_counts, write_report, \
        write_summary

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# by value: the kernels, then what a user runs (patched models, never a host sync), the build, compile, gradcheck
TEST_FILES = ("tests/test_triton.py", "tests/test_patching.py", "tests/test_gpu_sync.py", "tests/test_cuda_build.py",
              "tests/test_compile.py", "tests/test_gradcheck.py")
EARLY_TEST = "tests/test_triton.py"  # needs no extension: runs during the build
STAGES = ("environment", "build", "tests", "sanitizer", "benchmarks")
OUTPUT_FILES = ("REPORT.md", "summary.json", "console.log", "logs.tar.gz", "bench_rows.jsonl", "bench.png")
SANITIZER_TOOLS = ("memcheck", "racecheck")
MIN_SETUPTOOLS = 77  # pyproject.toml's SPDX license string; older ones get setup.py's build_in_place()
_BUILD_IN_PLACE = "import runpy; runpy.run_path('setup.py', run_name='swin_kernels_setup')['build_in_place']()"


class Clock:
    def __init__(self, budget: float):
        self.start = time.monotonic()
        self.budget = budget

    def at(self, fraction: float) -> float:
        """The monotonic time at ``fraction`` of the budget."""
        return self.start + fraction * self.budget

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def end(self) -> float:
        return self.start + self.budget


class Console:
    """Progress lines with the elapsed time, on stdout and in console.log, flushed at once."""

    def __init__(self, path: Path, clock: Clock):
        self.path, self.clock = path, clock
        path.write_text("")

    def __call__(self, text: str) -> None:
        minutes, seconds = divmod(int(self.clock.elapsed), 60)
        line = f"[{minutes:2d}:{seconds:02d}] {text}"
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")


class GpuCheck:
    def __init__(self, args):
        self.args = args
        self.python = args.python
        self.out = Path(args.out or os.environ.get("OUT") or ROOT / "results" / "gpu").resolve()
        self.work = Path(args.work).resolve() if args.work else ROOT / "build" / "gpu-check"
        self.logs = self.work / "logs"
        self.out.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        for old in [*self.logs.glob("*"), *(self.out / name for name in OUTPUT_FILES), self.work / "bench.md"]:
            if old.is_file():
                old.unlink()
        self.clock = Clock(args.budget)
        self.say = Console(self.out / "console.log", self.clock)
        self.stages = {name: Stage(name, title) for name, title in (
            ("environment", "environment"), ("build", "build (setup.py build_ext --inplace)"),
            ("tests", "GPU tests (pytest)"), ("sanitizer", "compute-sanitizer memcheck + racecheck"),
            ("benchmarks", "GPU benchmarks"))}
        self.env_info: dict = {}
        self.backends: dict = {}
        self.selected = set(args.stages.split(",")) if args.stages else set(STAGES)
        self.test_files = args.test_files.split(",") if args.test_files else list(TEST_FILES)
        unknown = self.selected - set(STAGES)
        if unknown:
            raise SystemExit(f"unknown stage(s) {', '.join(sorted(unknown))}; choose from {', '.join(STAGES)}")

    # --------------------------------------------------------------------------------------------- helpers
    @property
    def gpu(self) -> bool:
        return bool(self.env_info.get("torch", {}).get("cuda_available"))

    def no_gpu_reason(self) -> str:
        torch_info = self.env_info.get("torch", {})
        return "no GPU: " + (torch_info.get("why_no_gpu") or torch_info.get("error") or "torch could not be probed")

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        env["PIP_NO_INDEX"] = "1"  # nothing here installs; should anything try, it finds no index
        # one Triton cache for every job: a kernel specialisation compiled by the tests is warm for the benchmarks
        env.setdefault("TRITON_CACHE_DIR", str(self.work / "triton-cache"))
        env.update(extra)
        return env

    def job(self, name: str, command: list[str], deadline: float, **env: str) -> Job:
        return Job(name, command, self.logs / f"{name}.log", deadline, env=self.env(**env), cwd=ROOT)

    def wanted(self, name: str) -> bool:
        if name in self.selected:
            return True
        self.finish(self.stages[name], "skipped", "not selected (--stages)")
        return False

    def finish(self, stage: Stage, status: str, detail: str, seconds: float = 0.0) -> None:
        stage.status, stage.detail, stage.seconds = status, detail, seconds
        self.say(f"{stage.name}: {status}: {detail}")
        self.write_outputs()

    def write_outputs(self) -> None:
        header = [f"Budget {self.args.budget:.0f} s; {self.clock.elapsed:.0f} s used when this was written. "
                  f"Python: `{self.python}`."]
        if self.env_info:
            header.append(_environment_line(self.env_info))
        sections = []
        bench_md = self.work / "bench.md"
        if bench_md.exists():
            sections.append(bench_md.read_text())
        stages = list(self.stages.values())
        write_report(self.out / "REPORT.md", header, stages, sections)
        write_summary(self.out / "summary.json", stages, {"environment": self.env_info, "backends": self.backends,
                                                           "budget_s": self.args.budget,
                                                           "elapsed_s": round(self.clock.elapsed, 1)})
        bundle(self.logs, self.out / "logs.tar.gz")

    # ---------------------------------------------------------------------------------------------- stages
    def environment(self) -> None:
        stage = self.stages["environment"]
        path = self.logs / "environment.json"
        job = self.job("environment", [self.python, str(HERE / "gpu_probe.py"), str(path)],
                       time.monotonic() + 90).start().wait()
        if not path.exists():
            self.finish(stage, "failed", f"the probe did not finish ({job.outcome()}): {job.tail(3)}", job.seconds)
            return
        self.env_info = json.loads(path.read_text())
        info = self.env_info
        torch_info = info.get("torch", {})
        gpu = (f"{torch_info['name']} (compute capability {torch_info['capability']})" if self.gpu
               else self.no_gpu_reason())
        nvcc = info["nvcc"].get("path")
        sanitizer = info["compute_sanitizer"].get("path")
        detail = (f"{gpu}; torch {torch_info.get('version', '?')}; "
                  f"nvcc {info['nvcc'].get('version') if nvcc else 'not found (the cuda backend cannot be built)'}; "
                  f"compute-sanitizer {info['compute_sanitizer'].get('version') if sanitizer else 'not found'}")
        missing = [name for name, version in info.get("packages", {}).items() if version is None]
        if missing:
            stage.notes.append(f"not installed: {', '.join(missing)}")
        self.finish(stage, "failed" if "error" in torch_info else "passed", detail, job.seconds)

    def cuda_archs(self) -> str | None:
        if os.environ.get("SWIN_KERNELS_CUDA_ARCHS"):
            return os.environ["SWIN_KERNELS_CUDA_ARCHS"]
        if self.gpu:
            return self.env_info["torch"]["capability"].replace(".", "")
        return None

    def start_build(self) -> Job | None:
        if not self.wanted("build"):
            return None
        extra = {"MAX_JOBS": str(max(1, (os.cpu_count() or 2) - 2))}
        if archs := self.cuda_archs():
            extra["SWIN_KERNELS_CUDA_ARCHS"] = archs
        limit = min(0.4 * self.args.budget, 240)
        command = [self.python, "setup.py", "build_ext", "--inplace"]
        setuptools = self.env_info.get("packages", {}).get("setuptools") or "0"
        if int(setuptools.split(".")[0]) < MIN_SETUPTOOLS:
            command = [self.python, "-c", _BUILD_IN_PLACE]
            self.stages["build"].notes.append(
                f"setuptools {setuptools} rejects pyproject.toml's license field (it needs >= {MIN_SETUPTOOLS}): "
                "built with setup.py's build_in_place(), which does not read pyproject.toml")
        self.say(f"build: starting ({'for compute capability ' + archs if archs else 'no GPU: CPU part'}; "
                 f"limit {limit:.0f} s)")
        return self.job("build", command, time.monotonic() + limit, **extra).start()

    def finish_build(self, job: Job | None) -> None:
        stage = self.stages["build"]
        if job is None:
            return
        job.wait()
        check = self.job("import-check", [self.python, "-c", _IMPORT_CHECK, str(self.logs / "backends.json")],
                         time.monotonic() + 120).start().wait()
        backends_file = self.logs / "backends.json"
        self.backends = json.loads(backends_file.read_text()) if backends_file.exists() else {}
        available = self.backends.get("available")
        listed = ", ".join(available) if available else f"unknown ({check.tail(2)})"
        detail = f"{job.outcome()}; backends: {listed}"
        if self.backends.get("cuda_archs"):
            detail += f"; CUDA kernels: {self.backends['cuda_archs']}"
        for name, reason in self.backends.get("reasons", {}).items():
            if reason:
                stage.notes.append(f"{name}: {reason}")
        log = job.log.read_text(errors="replace").splitlines()
        stage.notes += [line for line in log if "swin_kernels: WARNING" in line]
        failed = job.returncode != 0 or not self.backends.get("extension_loaded")
        missing = [name for name in ("triton", "cuda") if self.gpu and name not in (available or [])]
        if failed:
            status, detail = "failed", detail + f": {job.tail(3)}"
        elif missing:  # e.g. nvcc absent or of another CUDA major version: the CPU-only fallback was built
            reasons = self.backends.get("reasons", {})
            status = "partial"
            detail += "; on this GPU " + "; ".join(f"{name} cannot run: {reasons.get(name)}" for name in missing)
        else:
            status = "passed"
        self.finish(stage, status, detail, job.seconds)

    def pytest_job(self, test_file: str, deadline: float, **env: str) -> Job:
        stem = Path(test_file).stem
        command = [self.python, "-m", "pytest", test_file, "-v", "-rfEs", "--color=no", "-p", "no:cacheprovider",
                   "--durations=10", f"--junitxml={self.logs / f'pytest-{stem}.xml'}"]
        return self.job(f"pytest-{stem}", command, deadline, **env)

    def finish_tests(self, jobs: list[Job]) -> None:
        stage = self.stages["tests"]
        total, notes, cut = PytestCounts(), [], []
        for job in jobs:
            stem = job.name.removeprefix("pytest-")
            counts = read_test_counts(self.logs / f"pytest-{stem}.xml", job.log)
            if counts is None:
                notes.append(f"{stem}: no test result ({job.outcome()}): {job.tail(2)}")
                total.errors += 1
                continue
            total.add(counts)
            notes.append(f"{stem}: {counts.summary()} ({job.outcome()})")
            if job.timed_out:
                cut.append(stem)
        notes += [f"FAILED {name}" for name in total.failures[:30]]
        notes += [f"skipped ×{n}: {reason}" for reason, n in total.skip_reasons.most_common(12)]
        stage.notes += notes
        detail = f"{len(jobs)} files: {total.summary()}"
        if cut:
            detail += f"; stopped at the time limit: {', '.join(cut)} (counts are of the tests that ran)"
        status = "failed" if total.failed or total.errors else "timed out" if cut else "passed"
        self.finish(stage, status, detail, max(j.seconds for j in jobs))

    def sanitizer_jobs(self, deadline: float) -> list[Job]:
        tool = self.env_info.get("compute_sanitizer", {}).get("path")
        jobs = []
        for name in SANITIZER_TOOLS:
            command = [tool, "--tool", name, "--error-exitcode", "86", "--print-limit", "30",
                       "--target-processes", "application-only", self.python, "-m", "tools.sanitize_kernels"]
            jobs.append(self.job(f"sanitizer-{name}", command, deadline, PYTORCH_NO_CUDA_MEMORY_CACHING="1").start())
        return jobs

    def finish_sanitizer(self, jobs: list[Job]) -> None:
        stage = self.stages["sanitizer"]
        parts, failed, broken = [], False, []
        for job in jobs:
            tool = job.name.removeprefix("sanitizer-")
            text = job.log.read_text(errors="replace")
            summary = parse_sanitizer(text)
            if summary is None:
                broken.append(tool)
                stage.notes.append(f"{tool}: no summary ({job.outcome()}); the tool did not work here:")
                stage.notes.append("```\n" + job.tail(8) + "\n```")
                continue
            workload_failed = "sanitize_kernels: all kernels ran" not in text
            failed |= summary["errors"] > 0 or workload_failed
            what = "hazards" if tool == "racecheck" else "errors"
            parts.append(f"{tool}: {summary['errors']} {what}" + (f", {summary['warnings']} warnings"
                                                                     if summary["warnings"] else "")
                         + (" (the workload failed, see its log)" if workload_failed else ""))
            stage.notes.append(f"{tool}: {job.outcome()}")
        if broken and not parts:
            self.finish(stage, "skipped", f"compute-sanitizer did not work here ({', '.join(broken)}: see notes)",
                        max(j.seconds for j in jobs))
            return
        detail = "; ".join(parts + [f"{t}: did not work here" for t in broken])
        timed_out = any(j.timed_out for j in jobs)
        status = "failed" if failed else "timed out" if timed_out else "partial" if broken else "passed"
        self.finish(stage, status, detail, max(j.seconds for j in jobs))

    def bench_command(self, out: Path, budget: float, *flags: str) -> list[str]:
        return [self.python, "-m", "benchmarks.gpu_bench", "--out", str(out), "--budget", f"{budget:.0f}", *flags]

    def run_benchmarks(self) -> None:
        stage = self.stages["benchmarks"]
        deadline = self.clock.end - 25  # room for the report
        budget = deadline - time.monotonic() - 10
        flags = [] if self.gpu else ["--dry-run"]
        if budget < 20:
            self.finish(stage, "skipped", f"no time left in the budget ({budget:.0f} s)")
            return
        what = "on the GPU" if self.gpu else f"a dry run on the CPU ({self.no_gpu_reason()}): code path, no measurement"
        self.say(f"benchmarks: starting {what}, budget {budget:.0f} s")
        report_files = ["--markdown", str(self.work / "bench.md"), "--plot", str(self.out / "bench.png")]
        job = self.job("benchmarks", self.bench_command(self.out, budget, *flags, *report_files),
                       deadline).start().wait()
        report = None
        if not (self.work / "bench.md").exists():  # the run was stopped before it wrote its report
            report = self.job("bench-report", [self.python, "-m", "benchmarks.gpu_report", "--rows",
                                               str(self.out / "bench_rows.jsonl"), *report_files],
                              time.monotonic() + 60).start().wait()
        rows = _read_rows(self.out / "bench_rows.jsonl")
        measured = sum(1 for r in rows if r.get("status") == "ok")
        wrong = [r for r in rows if r.get("status") in ("wrong", "failed") and not r.get("peer")]
        peers = [r for r in rows if r.get("status") in ("wrong", "failed") and r.get("peer")]
        end = next((r for r in reversed(rows) if r.get("kind") == "end"), None)
        detail = f"{measured} measurements, {sum(1 for r in rows if r.get('status') == 'skipped')} skipped"
        if end is not None:
            detail += f"; {end.get('text', '')}"
        if not self.gpu:
            detail = "dry run on the CPU (no GPU): " + detail
        if report is not None and report.returncode != 0:
            stage.notes.append(f"the report failed ({report.outcome()}): {report.tail(3)}")
        stage.notes += [f"{r.get('contender')} {r.get('label', '')}: {r.get('reason', '')}" for r in wrong[:10]]
        stage.notes += [f"a peer's result, not this library's (does not fail the check): {r.get('contender')} "
                        f"{r.get('label', '')}: {r.get('reason', '')}" for r in peers[:10]]
        if wrong or job.returncode not in (0, None) and not job.timed_out:
            status = "failed"
            detail += f"; {len(wrong)} wrong or failed" + ("" if job.returncode == 0 else f"; {job.outcome()}")
        elif job.timed_out or end is None or end.get("stopped_early"):
            status = "partial"
            if job.timed_out:
                detail += f"; {job.outcome()}"
        else:
            status = "passed"
        self.finish(stage, status, detail, job.seconds)

    # ------------------------------------------------------------------------------------------------- run
    def run(self) -> int:
        self.say(f"gpu-check: budget {self.args.budget:.0f} s, output in {self.out}")
        self.environment()  # always: every other stage depends on what the machine has
        tests_deadline = self.clock.at(0.62)
        run_tests = "tests" in self.selected and (self.gpu or self.args.cpu_tests)
        early: list[Job] = []
        if run_tests and EARLY_TEST in self.test_files:
            # does not load the extension, so a half-written _C file cannot matter
            early.append(self.pytest_job(EARLY_TEST, tests_deadline, SWIN_KERNELS_DISABLE_EXTENSION="1").start())
            self.say(f"tests: {EARLY_TEST} started beside the build")
        self.finish_build(self.start_build())

        late: list[Job] = []
        if self.wanted("tests"):
            if not run_tests:
                self.finish(self.stages["tests"], "skipped",
                            f"{self.no_gpu_reason()}; the GPU tests need a CUDA device")
            else:
                late = [self.pytest_job(f, tests_deadline).start() for f in self.test_files if f != EARLY_TEST]
                self.say(f"tests: {len(late)} more files started (limit {tests_deadline - time.monotonic():.0f} s)")
        sanitizer: list[Job] = []
        if self.wanted("sanitizer"):
            if not self.gpu:
                tool = self.env_info.get("compute_sanitizer", {}).get("path")
                where = f"is at {tool}" if tool else "not found either"
                self.finish(self.stages["sanitizer"], "skipped", f"{self.no_gpu_reason()}; compute-sanitizer {where}")
            elif not self.env_info.get("compute_sanitizer", {}).get("path"):
                self.finish(self.stages["sanitizer"], "skipped",
                            "compute-sanitizer not found (PATH, CUDA_HOME/bin, /usr/local/cuda*/bin)")
            else:
                sanitizer = self.sanitizer_jobs(tests_deadline)
                self.say("sanitizer: memcheck and racecheck started beside the tests")
        warm: list[Job] = []
        if self.gpu and "benchmarks" in self.selected:
            budget = tests_deadline - time.monotonic() - 20
            if budget > 30:
                warm = [self.job("bench-warmup", self.bench_command(self.work / "warmup", budget, "--warm-only"),
                                 tests_deadline).start()]
                self.say("benchmarks: warm-up (compile caches) started beside the tests")

        test_jobs = early + late

        def ended(job: Job) -> None:
            self.say(f"{job.name}: {job.outcome()}")
            if job in test_jobs and all(j.done for j in test_jobs):
                self.finish_tests(test_jobs)
            if job in sanitizer and all(j.done for j in sanitizer):
                self.finish_sanitizer(sanitizer)
            if all(j.done for j in test_jobs + sanitizer):
                for j in warm:  # the warm-up only uses time the tests leave: stop it with them
                    j.deadline = min(j.deadline, time.monotonic())

        wait_all(test_jobs + sanitizer + warm, on_done=ended)
        if run_tests and not test_jobs:
            self.finish(self.stages["tests"], "skipped", "no test file to run")
        if self.wanted("benchmarks"):
            self.run_benchmarks()
        return self.summarize()

    def summarize(self) -> int:
        self.write_outputs()
        lines = [f"gpu-check summary ({self.clock.elapsed:.0f} s of a {self.args.budget:.0f} s budget):"]
        width = max(len(name) for name in self.stages)
        for stage in self.stages.values():
            lines.append(f"  {stage.name.ljust(width)}  {stage.status.ljust(9)}  {stage.detail}")
        lines.append(f"report: {self.out / 'REPORT.md'}; logs: {self.out / 'logs.tar.gz'}")
        print("\n".join(lines), flush=True)
        with open(self.out / "console.log", "a") as f:
            f.write("\n".join(lines) + "\n")
        return 1 if any(s.status == "failed" for s in self.stages.values()) else 0


# Run with the Python under test after the build: which backends can run, and what the extension was built for.
_IMPORT_CHECK = """
import json, sys
result = {}
try:
    import swin_kernels
    from swin_kernels import backends
    from swin_kernels.ops import _ext
    result["available"] = swin_kernels.available_backends()
    result["reasons"] = {n: backends.unavailable_reason(n) for n in backends.BACKEND_NAMES}
    result["extension_loaded"] = _ext.unavailable_reason() is None
    if result["extension_loaded"]:
        from swin_kernels.ops import cuda
        archs = cuda.built_archs()
        result["cuda_archs"] = archs.describe() if archs else None
except Exception as error:
    result["error"] = f"{type(error).__name__}: {error}"
open(sys.argv[1], "w").write(json.dumps(result, indent=1))
print(json.dumps(result, indent=1))
"""


def _environment_line(info: dict) -> str:
    torch_info = info.get("torch", {})
    gpu = torch_info.get("name") or "no GPU"
    packages = info.get("packages", {})
    return (f"Machine: {gpu}; {info.get('cpu_count')} CPUs; Python {info.get('python_version')}; torch "
            f"{torch_info.get('version')} (CUDA {torch_info.get('cuda')}); triton {packages.get('triton')}; "
            f"transformers {packages.get('transformers')}; nvidia-smi: {info.get('nvidia_smi') or 'not available'}.")


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            pass
    return rows


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for everything (default 480)")
    parser.add_argument("--out", help="output folder (default $OUT, else results/gpu)")
    parser.add_argument("--python", default=sys.executable, help="the Python under test (default: this one)")
    parser.add_argument("--stages", help=f"comma-separated subset of {','.join(STAGES)} (default: all)")
    parser.add_argument("--work", help="folder for logs and intermediate files (default build/gpu-check)")
    parser.add_argument("--test-files", help="comma-separated test files (default: the GPU test files)")
    parser.add_argument("--cpu-tests", action="store_true",
                        help="run the tests stage without a GPU too (Triton in its interpreter): rehearses it, slowly")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    return GpuCheck(parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
