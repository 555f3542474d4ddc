"""What a machine offers `make gpu-check`: one JSON object, printed and written to the path given (if any).

GPU (torch's view and nvidia-smi's), torch / triton / transformers versions, nvcc and compute-sanitizer. It does
not import swin_kernels, which may not be built yet.
"""

from __future__ import annotations

import glob
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys


def _run(command: list[str], timeout: float = 30) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return (result.stdout + result.stderr).strip() if result.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cuda_homes() -> list[str]:
    homes = [os.environ[v] for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    try:
        from torch.utils.cpp_extension import CUDA_HOME

        if CUDA_HOME:
            homes.append(CUDA_HOME)
    except Exception:  # torch missing or broken: the torch section says so
        pass
    return homes + ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]


def find_tool(name: str) -> str | None:
    """``name`` on PATH, else in a CUDA toolkit (bin/ or, for compute-sanitizer, its own folder)."""
    found = shutil.which(name)
    if found:
        return found
    for home in _cuda_homes():
        for candidate in (os.path.join(home, "bin", name), os.path.join(home, name, name)):
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    return None


def tool_info(name: str) -> dict:
    path = find_tool(name)
    if path is None:
        return {"path": None}
    text = _run([path, "--version"]) or ""
    match = re.search(r"(?:release|Version) (\d+(?:\.\d+)+)", text)
    version = match.group(1) if match else (text.splitlines()[-1] if text else None)
    return {"path": path, "version": version}


def torch_info() -> dict:
    try:
        import torch
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
    info = {"version": torch.__version__, "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(device_count=torch.cuda.device_count(), name=props.name,
                    capability=f"{props.major}.{props.minor}", memory_gib=round(props.total_memory / 2**30, 1),
                    sm_count=props.multi_processor_count)
    elif torch.version.cuda is None:
        info["why_no_gpu"] = f"torch {torch.__version__} is a build without CUDA"
    else:
        info["why_no_gpu"] = (f"torch.cuda.is_available() is False (torch {torch.__version__}, "
                              f"CUDA {torch.version.cuda})")
    return info


def nvidia_smi() -> str | None:
    return _run(["nvidia-smi", "--query-gpu=name,compute_cap,driver_version,memory.total", "--format=csv,noheader"])


def probe() -> dict:
    packages = ("triton", "transformers", "timm", "torchvision", "matplotlib", "pytest", "pytest-benchmark", "ninja",
                "numpy", "setuptools")
    return {
        "python": sys.executable,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch_info(),
        "nvidia_smi": nvidia_smi(),
        "packages": {name: _version(name) for name in packages},
        "nvcc": tool_info("nvcc"),
        "compute_sanitizer": tool_info("compute-sanitizer"),
    }


if __name__ == "__main__":
    text = json.dumps(probe(), indent=1)
    if len(sys.argv) > 1:  # a path: write the JSON there (stdout may carry warnings of the imports)
        with open(sys.argv[1], "w") as f:
            f.write(text + "\n")
    print(text)
