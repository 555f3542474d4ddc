"""What the numbers were measured on: CPU, cores, threads, load, library versions, GPU."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def machine_info() -> dict[str, str]:
    info = {
        "CPU": cpu_model(),
        "cores": str(os.cpu_count()),
        "torch CPU threads": str(torch.get_num_threads()),
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "transformers": _version("transformers"),
        "GPU": torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
        "load average (1/5/15 min) at start": load_average(),
    }
    return info


def busy_warning() -> str | None:
    """A sentence when other work already occupies a good part of the CPU, None otherwise."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    cores = os.cpu_count() or 1
    if load < 0.5 * cores:
        return None
    return (f"the machine was busy when the run started (1-minute load average {load:.1f} on {cores} cores): "
            "absolute times are inflated and noisy. With several torch threads, one descheduled thread stalls every "
            "parallel operation, so one thread gives steadier numbers on a shared machine")
