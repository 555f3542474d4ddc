"""The compile report's machinery on two kernels (the full report runs in `make test` / `make compile-report`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton", reason="the compile report needs triton")

# Real compilation needs a process where TRITON_INTERPRET was never set (conftest sets it for this one).
SCRIPT = r"""
import json
from tools import compile_report as report
plans = report.QUICK_PLANS
wanted = {("attention_fwd", 80, "bf16"), ("window_reverse", 90, "fp16")}
jobs = [job for job in report._attention_jobs(plans, dropout_too=False) + report._small_jobs(plans)
        if (job.kernel, job.arch, job.dtype) in wanted]
jobs = [job for i, job in enumerate(jobs) if job.kernel != "attention_fwd" or i == 0]  # one forward config
rows = [report.compile_job(job) for job in jobs]
print(json.dumps([{k: v for k, v in row.items() if k != "job"} | {"kernel": row["job"].kernel} for row in rows]))
"""


def test_compiles_for_sm80_and_sm90_without_spills():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {row["kernel"]: row for row in json.loads(result.stdout.strip().splitlines()[-1])}
    assert set(rows) == {"attention_fwd", "window_reverse"}
    for row in rows.values():
        assert row["error"] is None, row["error"]
        assert 0 < row["registers"] <= 255 and row["spills"] == 0
    assert rows["attention_fwd"]["mma"] > 0  # bf16 on sm_80: tensor-core mma.sync
    assert rows["window_reverse"]["mma"] == 0 and rows["window_reverse"]["wgmma"] == 0
