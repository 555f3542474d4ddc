"""`make cuda-check`: build the CUDA part of the extension for sm_80 and sm_90 without a GPU, and check resources.

* every csrc/cuda/*.cu is compiled by nvcc for each architecture with ``-Xptxas -v`` (the kernel files include no
  torch header; they get torch's include path anyway, as in the real build);
* the torch-facing host file csrc/cuda/ops_cuda.cpp and the op of limits_op.h are compiled (syntax only) against
  torch's headers, which the CPU wheel ships for CUDA too, and the CUDA runtime headers;
* the dynamic shared memory of each attention configuration must fit the architecture's opt-in limit: both come
  from csrc/cuda/kernel_limits.h (the JSON of limits_json.h, compiled and run on the host), the source that the
  op cuda_limits() and so the cuda backend read too.
Prints one row per kernel and architecture (registers, spills, static and dynamic shared memory) and exits non-zero
on any compile error, any register spill or shared memory over the limit.

    python -m tools.cuda_check [--arch 80 --arch 90] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
DEFAULT_ARCHS = ("80", "90")


@dataclass
class KernelResources:
    name: str
    arch: str
    registers: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    stack: int = 0
    static_smem: int = 0


def find_nvcc() -> str | None:
    for candidate in (shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def torch_include_dirs() -> list[str]:
    import torch

    base = Path(torch.__file__).resolve().parent / "include"
    return [str(base), str(base / "torch" / "csrc" / "api" / "include")]


def cuda_include_dir(nvcc: str) -> str:
    """The CUDA toolkit's include directory (holding cuda_runtime.h) of this nvcc."""
    candidates = [Path(nvcc).resolve().parent.parent / "include", Path(nvcc).parent.parent / "include"]
    candidates += [Path(os.environ[v]) / "include" for v in ("CUDA_HOME", "CUDA_PATH") if v in os.environ]
    candidates.append(Path("/usr/local/cuda/include"))
    for candidate in candidates:
        if (candidate / "cuda_runtime.h").exists():
            return str(candidate)
    return str(candidates[0])


_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas(text: str) -> list[KernelResources]:
    """Resources of each entry function in `nvcc -Xptxas -v` output."""
    kernels: list[KernelResources] = []
    for line in text.splitlines():
        if entry := _ENTRY.search(line):
            kernels.append(KernelResources(entry.group(1), entry.group(2).removeprefix("sm_")))
        elif kernels and (frame := _FRAME.search(line)):
            kernels[-1].stack, kernels[-1].spill_stores, kernels[-1].spill_loads = map(int, frame.groups())
        elif kernels and (used := _USED.search(line)):
            kernels[-1].registers = int(used.group(1))
            if smem := _SMEM.search(line):
                kernels[-1].static_smem = int(smem.group(1))
    return kernels


def readable_name(mangled: str) -> str:
    """Demangled kernel name without namespaces and parameters: attention_forward_kernel<__half>."""
    try:
        name = subprocess.run(["c++filt", mangled], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return mangled
    name = re.sub(r"\(anonymous namespace\)::|swin_kernels::cuda::|^void ", "", name)
    return re.sub(r"\([^()]*\)$", "", name)  # the parameter list


def compile_kernels(nvcc: str, source: Path, arch: str, out_dir: Path) -> tuple[int, str]:
    command = [nvcc, "-std=c++20", "-O3", "-c", str(source), f"-gencode=arch=compute_{arch},code=sm_{arch}",
               "-Xptxas", "-v", "-I", str(CSRC), *(f"-I{d}" for d in torch_include_dirs()),
               "-o", str(out_dir / f"{source.stem}.sm_{arch}.o")]
    result = subprocess.run(command, capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


def compile_host(nvcc: str, source: Path) -> tuple[int, str]:
    # The CPU wheel lacks the generated c10/cuda/impl/cuda_cmake_macros.h; the macro skips that include.
    compiler = os.environ.get("CXX", "g++")
    language = ["-x", "c++"] if source.suffix == ".h" else []  # a header: compiled as a file of its own
    command = [compiler, "-std=c++20", "-fsyntax-only", "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE", "-I", str(CSRC),
               *(f"-I{d}" for d in torch_include_dirs()), f"-I{cuda_include_dir(nvcc)}", *language, str(source)]
    result = subprocess.run(command, capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


_LIMITS_PROGRAM = r"""
#include <cstdio>
#include "cuda/limits_json.h"
int main() { std::puts(swin_kernels::cuda::limits_json().c_str()); }
"""


def kernel_limits(out_dir: Path) -> tuple[int, str, dict]:
    """(exit code, errors, the limits of csrc/cuda/kernel_limits.h as the op cuda_limits() reports them), from the
    sources as they are now (not from a possibly older build of the extension)."""
    source, binary = out_dir / "limits.cpp", out_dir / "limits"
    source.write_text(_LIMITS_PROGRAM)
    compiler = os.environ.get("CXX", "g++")
    built = subprocess.run([compiler, "-std=c++20", "-I", str(CSRC), str(source), "-o", str(binary)],
                           capture_output=True, text=True)
    if built.returncode:
        return built.returncode, built.stderr, {}
    ran = subprocess.run([str(binary)], capture_output=True, text=True)
    if ran.returncode:
        return ran.returncode, ran.stderr, {}
    return 0, "", json.loads(ran.stdout)


def smem_optin_limit(limits: dict, arch: str) -> int:
    """The opt-in shared memory per block of compute capability ``arch`` ("90") in the limits' table."""
    for entry in limits["smem_optin"]:
        major, minor = entry["capability"]
        if f"{major}{minor}" == arch:
            return entry["bytes"]
    return limits["smem_optin_other"]


def dynamic_smem(out_dir: Path) -> tuple[int, str, list[tuple[str, str, int, int]]]:
    """(kernel, dtype, head_dim, bytes) of every attention configuration, from the kernels' own layout code."""
    code, error, limits = kernel_limits(out_dir)
    rows = [(r["pass"], "fp16/bf16" if r["element_bytes"] == 2 else "fp32", r["head_dim"], r["bytes"])
            for r in limits.get("attention_smem", [])]
    return code, error, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", action="append", help="compute capability without the dot (default: 80, 90)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args(argv)
    archs = args.arch or list(DEFAULT_ARCHS)
    nvcc = find_nvcc()
    if nvcc is None:
        print("cuda-check: nvcc not found (looked on PATH and in /usr/local/cuda/bin)", file=sys.stderr)
        return 1
    sources = sorted((CSRC / "cuda").glob("*.cu"))
    # the torch-facing host code, and the op that every build registers (csrc/swin_kernels.cpp includes it)
    hosts = sorted((CSRC / "cuda").glob("*.cpp")) + [CSRC / "cuda" / "limits_op.h"]
    started = time.perf_counter()
    failures: list[str] = []
    kernels: list[KernelResources] = []
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max(1, args.jobs)) as pool:
        out_dir = Path(tmp)
        jobs = {(s.name, a): pool.submit(compile_kernels, nvcc, s, a, out_dir) for s in sources for a in archs}
        host_jobs = {h.name: pool.submit(compile_host, nvcc, h) for h in hosts}
        limits_job = pool.submit(kernel_limits, out_dir)
        for (name, arch), job in jobs.items():
            code, output = job.result()
            if code:
                failures.append(f"{name} (sm_{arch}) does not compile:\n{output}")
            found = parse_ptxas(output)
            if not code and not found:
                failures.append(f"{name} (sm_{arch}): no kernels in the ptxas report")
            kernels += found
        for name, job in host_jobs.items():
            code, output = job.result()
            if code:
                failures.append(f"{name} (host, against torch's headers) does not compile:\n{output}")
        limits_code, limits_error, limits = limits_job.result()
        if limits_code:
            failures.append(f"kernel_limits.h: the limits program failed:\n{limits_error}")

    print(f"{'kernel':<46} {'arch':>5} {'regs':>5} {'spill st/ld':>12} {'stack':>6} {'static smem':>12}")
    for k in sorted(kernels, key=lambda k: (readable_name(k.name), k.arch)):
        print(f"{readable_name(k.name):<46} {'sm_' + k.arch:>5} {k.registers:>5} "
              f"{f'{k.spill_stores}/{k.spill_loads}':>12} {k.stack:>6} {k.static_smem:>12}")
        if k.spill_stores or k.spill_loads:
            failures.append(f"{readable_name(k.name)} spills registers on sm_{k.arch} "
                            f"({k.spill_stores} bytes stored, {k.spill_loads} loaded)")
    if limits:
        print(f"\nkernel_limits.h: windows of up to {limits['max_tokens']} tokens, head_dim a multiple of "
              f"{limits['head_dim_multiple']} up to {limits['max_head_dim']}")
        print(f"\n{'attention kernel':<10} {'dtype':>10} {'head_dim':>9} {'dynamic smem':>13}   limit per arch")
        allowed = {a: smem_optin_limit(limits, a) for a in archs}
        for row in limits["attention_smem"]:
            kernel, size = row["pass"], row["bytes"]
            dtype, head_dim = "fp16/bf16" if row["element_bytes"] == 2 else "fp32", row["head_dim"]
            print(f"{kernel:<10} {dtype:>10} {head_dim:>9} {size:>13}   "
                  + ", ".join(f"sm_{a}: {allowed[a]}" for a in archs))
            for arch in archs:
                if size > allowed[arch]:
                    failures.append(f"{kernel} {dtype} head_dim {head_dim} needs {size} bytes of shared memory, "
                                    f"more than sm_{arch} allows")
    print(f"\ncompiled {len(sources)} CUDA files x {len(archs)} archs and {len(hosts)} host files "
          f"in {time.perf_counter() - started:.1f} s")
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    if not failures:
        print("cuda-check passed: every kernel compiles for " + ", ".join(f"sm_{a}" for a in archs) + " without spills")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
