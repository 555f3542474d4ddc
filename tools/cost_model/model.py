"""Modelled time of a kernel and of a call, from counts (see the package docstring for the assumptions)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import hardware

CALIBRATION = Path(__file__).with_name("calibration.json")
# Chosen, not fitted: a GPU-side gap between dependent kernels, and the resident warps per scheduler at which
# issue stops being latency-limited (below it the efficiency falls in proportion). At 4 the headline backward
# (2-3 resident 4-warp blocks) came out 29 % under its measurement, at 6 16 %: the backward is latency-bound.
LAUNCH_GAP_S = 2e-6
SATURATING_WARPS = 6


def calibration() -> dict:
    return json.loads(CALIBRATION.read_text())


def kernel_time(k: dict, gpu: hardware.Gpu, efficiency: float) -> dict:
    """k: {"programs", "warps", "ctas_per_sm", "instructions" (per warp per program), "bytes"}."""
    ctas = max(1, k["ctas_per_sm"])
    per_sm = math.ceil(k["programs"] / gpu.sms)  # programs each SM runs
    resident = min(ctas, per_sm)
    waves = math.ceil(per_sm / resident)
    warps_per_scheduler = resident * k["warps"] / hardware.SCHEDULERS
    eff = efficiency * min(1.0, warps_per_scheduler / SATURATING_WARPS)
    issue = waves * resident * k["warps"] * k["instructions"] / (hardware.SCHEDULERS * eff * gpu.clock_hz)
    memory = k["bytes"] / gpu.hbm_bytes_per_s
    return {"issue_s": issue, "bytes_s": memory, "time_s": max(issue, memory) + LAUNCH_GAP_S,
            "bound": "issue" if issue >= memory else "bytes"}


def call_time(kernels: list[dict], gpu: hardware.Gpu, efficiency: float) -> float:
    return sum(kernel_time(k, gpu, efficiency)["time_s"] for k in kernels)


def fit_efficiency(kernels: list[dict], measured_s: float, gpu: hardware.Gpu = hardware.H200) -> float:
    """The issue efficiency at which ``kernels`` take ``measured_s`` (bisection; time falls as efficiency rises)."""
    low, high = 1e-3, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        if call_time(kernels, gpu, mid) > measured_s:
            low = mid
        else:
            high = mid
    return (low + high) / 2
