"""`make gpu-check` on a machine without a GPU: its job control, its parsers, the benchmark plan, and two short
runs of the real command (the tests stage on a toy test file cut by its time limit; the benchmarks' CPU dry run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

from tools import gpu_jobs
from tools.gpu_results import parse_junit, parse_sanitizer, parse_verbose_log


def _import_benchmarks():
    """benchmarks.contenders raises dynamo's recompile limits when imported: keep this test session's own."""
    config = torch._dynamo.config
    saved = {name: getattr(config, name) for name in ("recompile_limit", "accumulated_recompile_limit",
                                                      "fail_on_recompile_limit_hit") if hasattr(config, name)}
    try:
        from benchmarks import gpu_bench, gpu_metrics
    finally:
        for name, value in saved.items():
            setattr(config, name, value)
    return gpu_bench, gpu_metrics


gpu_bench, gpu_metrics = _import_benchmarks()
AttentionGroup, CompileCaps, EndToEndGroup = gpu_bench.AttentionGroup, gpu_bench.CompileCaps, gpu_bench.EndToEndGroup

ROOT = Path(__file__).resolve().parents[1]
GPU_CHECK = ROOT / "tools" / "gpu_check.py"
MAX_OUTPUT_FILES = 8  # what the lent machine sends back


# ----------------------------------------------------------------------------------------------- jobs
def test_a_job_past_its_deadline_is_interrupted(tmp_path):
    job = gpu_jobs.Job("sleeper", [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                       tmp_path / "sleeper.log", time.monotonic() + 1.0).start().wait(0.1)
    assert job.timed_out and job.signals == ["SIGINT"] and job.returncode != 0
    assert job.seconds < 10 and "stopped at its time limit" in job.outcome()
    assert "up" in job.log.read_text()


def test_a_job_ignoring_sigint_is_terminated(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_jobs, "INTERRUPT_GRACE_S", 0.5)
    code = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"
    job = gpu_jobs.Job("stubborn", [sys.executable, "-c", code], tmp_path / "stubborn.log",
                       time.monotonic() + 0.5).start().wait(0.1)
    assert job.signals == ["SIGINT", "SIGTERM"] and job.seconds < 10


def test_a_job_within_its_deadline_keeps_its_exit_status(tmp_path):
    job = gpu_jobs.Job("quick", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "quick.log",
                       time.monotonic() + 30).start().wait(0.1)
    assert job.returncode == 3 and not job.timed_out and job.outcome().startswith("exit status 3")


# -------------------------------------------------------------------------------------------- parsers
JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="4">
<testcase classname="tests.test_x" name="test_ok" time="0.1"/>
<testcase classname="tests.test_x" name="test_bad" time="0.1"><failure message="assert 1 == 2">x</failure></testcase>
<testcase classname="tests.test_x" name="test_gpu" time="0"><skipped type="pytest.skip" message="no GPU">s</skipped>
</testcase>
<testcase classname="tests.test_x" name="test_gpu2" time="0"><skipped message="no GPU">s</skipped></testcase>
</testsuite></testsuites>"""


def test_junit_and_verbose_logs_are_counted(tmp_path):
    (tmp_path / "r.xml").write_text(JUNIT)
    counts = parse_junit(tmp_path / "r.xml")
    assert (counts.passed, counts.failed, counts.skipped) == (1, 1, 2)
    assert counts.failures == ["tests.test_x::test_bad"] and counts.skip_reasons == {"no GPU": 2}
    (tmp_path / "v.log").write_text("tests/test_x.py::test_ok PASSED  [ 33%]\n"
                                    "tests/test_x.py::test_bad[fp16] FAILED  [ 66%]\n"
                                    "tests/test_x.py::test_gpu SKIPPED (no GPU)  [100%]\nother line\n")
    counts = parse_verbose_log(tmp_path / "v.log")
    assert (counts.passed, counts.failed, counts.skipped, counts.complete) == (1, 1, 1, False)
    assert counts.failures == ["tests/test_x.py::test_bad[fp16]"]


def test_sanitizer_summaries_are_parsed():
    assert parse_sanitizer("========= COMPUTE-SANITIZER\n========= ERROR SUMMARY: 0 errors\n") == {
        "errors": 0, "warnings": 0}
    assert parse_sanitizer("========= ERROR SUMMARY: 3 errors") == {"errors": 3, "warnings": 0}
    text = "========= RACECHECK SUMMARY: 2 hazards displayed (1 error, 1 warning)"
    assert parse_sanitizer(text) == {"errors": 1, "warnings": 1}
    assert parse_sanitizer("Error: Device not supported") is None


# ------------------------------------------------------------------------------------ benchmark plan
def test_the_benchmarks_start_with_the_targets_block():
    groups = gpu_bench.plan(dry_run=False)
    first = groups[0].shape
    assert (first.batch, first.height, first.width, first.channels, first.heads, first.window, first.shift) == (
        128, 56, 56, 96, 3, 7, 3)
    assert [(g.level, g.dtype, g.pass_name) for g in groups[:2]] == [
        ("core", torch.bfloat16, "forward"), ("core", torch.bfloat16, "forward+backward")]
    assert groups[2:4] == [EndToEndGroup("eager", "inference"), EndToEndGroup("eager", "training step")]
    attention = [g for g in groups if isinstance(g, AttentionGroup) and g.run == 1]
    assert len(attention) == len(set(attention)) == 2 * 2 * 3 * 7  # levels x passes x dtypes x shapes
    # the headline rows run twice (stability), then the other libraries' Swin-T, before the other shapes
    again = [g for g in groups if getattr(g, "run", 1) == 2]
    assert again == [AttentionGroup(g.level, g.shape, g.dtype, g.pass_name, run=2) for g in groups[:2]] + [
        EndToEndGroup("eager", p, run=2) for p in ("inference", "training step")]
    others = [EndToEndGroup("eager", p, library) for library in ("timm", "torchvision")
              for p in ("inference", "training step")]
    assert groups[4:12] == again + others
    # then the 3-D rows (issue 18's workloads: the core at 8x7x7 and 7x7x7, swin3d_t, SwinUNETR 3-D)
    assert groups[12:18] == [gpu_bench.VolumeGroup(kind, p) for kind in ("core", "swin3d", "unetr")
                             for p in ("inference", "training step")]
    assert {(g.shape.stage, g.shape.shift) for g in attention} == {(1, 0), (1, 3), (2, 0), (2, 3), (3, 0), (3, 3),
                                                                   (4, 0)}
    assert {g.shape.batch for g in attention} == {128}
    assert {EndToEndGroup(m, p) for m in ("eager", "compiled") for p in ("inference", "training step")} <= set(groups)
    warm = gpu_bench.plan(dry_run=False, warm_only=True)
    assert warm[:2] == groups[:2] and EndToEndGroup("compiled", "training step") in warm


def test_yardsticks_of_the_first_block():
    shape = gpu_bench.swin_t_shapes(128)["s1s3"]
    tokens = 128 * 56 * 56
    assert gpu_metrics.core_floor_bytes(shape, torch.bfloat16, "forward") == tokens * 4 * 96 * 2
    assert gpu_metrics.core_floor_bytes(shape, torch.float32, "forward+backward") == tokens * 11 * 96 * 4
    forward = gpu_metrics.core_flops(shape, "forward")
    assert forward == 4 * tokens * 49 * 96  # 4·N·d per row and head, heads·d = C
    assert gpu_metrics.core_flops(shape, "forward+backward") == pytest.approx(3.5 * forward)
    dry = gpu_bench.dry_run_shapes()["s1s3"]  # 9x10 pads to 14x14: padded rows are computed too
    assert gpu_metrics.core_flops(dry, "forward") == 4 * 1 * 14 * 14 * 49 * 32
    assert gpu_metrics.hbm_peak(torch.device("cpu"))[0] is None


def test_compile_caps_drop_slow_compilers():
    caps = CompileCaps(cap_s=60)
    assert caps.refusal("triton", remaining_s=1) is None  # not a compiled contender
    assert caps.refusal("flex", remaining_s=100) is None  # the prior (40 s) fits
    assert "does not fit" in caps.refusal("flex", remaining_s=30)
    caps.record("flex", 45)
    assert caps.refusal("flex", remaining_s=100) is None
    assert "does not fit in 25% of the 100 s left" in caps.refusal("flex", remaining_s=100, share=0.25)
    caps.record("flex", 20)
    assert "cap (60 s) is spent" in caps.refusal("flex", remaining_s=1000)


# ------------------------------------------------------------------------------------ the real command
def gpu_check(tmp_path, *args, budget: float) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "out"
    command = [sys.executable, str(GPU_CHECK), "--budget", str(budget), "--out", str(out), "--work",
               str(tmp_path / "work"), *args]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=budget + 60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= MAX_OUTPUT_FILES, files
    return result, out


TOY_TESTS = """import time, pytest
def test_passes():
    assert True
def test_skips():
    pytest.skip("needs something this machine lacks")
def test_outlives_the_stage():
    time.sleep(120)
"""


def test_tests_stage_cut_by_its_time_limit_reports_what_ran(tmp_path):
    toy = tmp_path / "test_toy.py"
    toy.write_text(TOY_TESTS)
    result, out = gpu_check(tmp_path, "--stages", "tests", "--cpu-tests", "--test-files", str(toy), budget=16)
    assert result.returncode == 0, result.stdout + result.stderr  # cut short is reported, not a failure
    summary = json.loads((out / "summary.json").read_text())
    stages = {s["name"]: s for s in summary["stages"]}
    assert stages["tests"]["status"] == "timed out"
    assert "1 passed, 0 failed, 1 skipped, 1 interrupted" in stages["tests"]["detail"]
    assert any("needs something this machine lacks" in note for note in stages["tests"]["notes"])
    for name in ("build", "sanitizer", "benchmarks"):
        assert stages[name]["status"] == "skipped" and "not selected" in stages[name]["detail"]
    with tarfile.open(out / "logs.tar.gz") as tar:
        assert "logs/pytest-test_toy.xml" in tar.getnames()
    report = (out / "REPORT.md").read_text()
    assert "| GPU tests (pytest) | **timed out** |" in report
    closing = result.stdout.strip().splitlines()[-7:]  # the summary comes last: a title, five stages, the paths
    assert closing[0].startswith("gpu-check summary") and closing[-1].startswith("report: ")


def test_benchmarks_dry_run_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the benchmarks stage would measure rather than dry-run")
    result, out = gpu_check(tmp_path, "--stages", "benchmarks", budget=150)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [json.loads(line) for line in (out / "bench_rows.jsonl").read_text().splitlines()]
    assert rows[0]["kind"] == "meta" and rows[0]["dry_run"] and rows[-1]["kind"] == "end"
    attention = [r for r in rows if r["kind"] == "attention"]
    timed = {(r["level"], r["contender"]) for r in attention if r["status"] == "ok"}
    assert {("core", "reference"), ("core", "sdpa"), ("branch", "official"), ("branch", "hf-sdpa")} <= timed
    for r in attention:
        assert r["status"] in ("ok", "skipped"), r
        if r["status"] == "ok":
            assert r["median_ms"] > 0 and r["tflops"] > 0 and r.get("peak_bytes") is None  # GPU-only count
            assert r["contender"] == r["eager"] or r["error"] < 1e-4
        else:
            assert r["reason"]
    skipped = {r["contender"] for r in attention if r["status"] == "skipped"}
    assert {"triton", "cuda", "flex", "compiled"} <= skipped
    e2e = [r for r in rows if r["kind"] == "end_to_end"]
    assert {(r["mode"], r["status"]) for r in e2e} == {("eager", "ok"), ("compiled", "skipped")}
    report = (out / "REPORT.md").read_text()
    assert "## GPU benchmarks (dry run on the CPU" in report
    assert "| triton: core forward >= 4x eager | not measured: dry run | — |" in report
    assert "| GPU benchmarks | **passed** |" in report and "no GPU" in report
