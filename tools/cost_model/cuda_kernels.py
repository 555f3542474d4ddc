"""The CUDA kernels (csrc/cuda/*.cu): compiled by nvcc to a cubin for sm_90, each kernel's registers, shared
memory, SASS instructions (static: the CUDA loops' trip counts are not mapped yet) and tensor-core instructions.
Cached like the Triton compiles, keyed by the sources."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from .launches import ROOT
from .sass import TENSOR_CORE
from .triton_build import CACHE, triton_tool

CSRC = ROOT / "csrc"


def _digest() -> str:
    h = hashlib.sha256()
    for path in sorted(CSRC.rglob("*")):
        if path.suffix in (".cu", ".cuh", ".h"):
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()[:32]


def analyse(arch: int = 90) -> list[dict]:
    """One record per kernel of every .cu file; [] when nvcc is missing."""
    from tools import cuda_check

    nvcc = cuda_check.find_nvcc()
    if nvcc is None:
        return []
    cached = CACHE / f"cuda-sm{arch}-{_digest()}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for source in sorted((CSRC / "cuda").glob("*.cu")):
            cubin = Path(tmp) / f"{source.stem}.cubin"
            subprocess.run([nvcc, "-std=c++20", "-O3", "-cubin", f"-arch=sm_{arch}", "-I", str(CSRC),
                            *(f"-I{d}" for d in cuda_check.torch_include_dirs()), str(source), "-o", str(cubin)],
                           check=True, capture_output=True, text=True)
            records += _kernels(cubin, source.name)
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(records))
    return records


def _kernels(cubin: Path, file: str) -> list[dict]:
    usage = subprocess.run([triton_tool("cuobjdump"), "-res-usage", str(cubin)], capture_output=True, text=True,
                           check=True).stdout
    resources = dict(re.findall(r"Function (\S+):\s*\n\s*REG:(\d+)", usage))
    shared = dict(re.findall(r"Function (\S+):\s*\n\s*REG:\d+ STACK:\d+ SHARED:(\d+)", usage))
    listing = subprocess.run([triton_tool("cuobjdump"), "-sass", str(cubin)], capture_output=True, text=True,
                             check=True).stdout
    out = []
    for name, body in re.findall(r"Function : (\S+)\n(.*?)(?=\n\s*Function : |\Z)", listing, re.S):
        opcodes = [m.group(1).split(".")[0] for m in
                   re.finditer(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T\d]+\s+)?([A-Z][A-Z0-9_.]*)", body)]
        opcodes = [o for o in opcodes if o != "NOP"]
        cores = Counter(o for o in opcodes if o in TENSOR_CORE)
        out.append({"kernel": _readable(name), "file": file, "registers": int(resources.get(name, -1)),
                    "shared_static": int(shared.get(name, 0)), "static_instructions": len(opcodes),
                    "tensor_core": dict(cores)})
    return out


def _readable(mangled: str) -> str:
    from tools import cuda_check

    return cuda_check.readable_name(mangled)


def markdown(records: list[dict]) -> str:
    lines = ["", "CUDA kernels (csrc/cuda, nvcc -cubin sm_90; static SASS counts, trip counts not modelled):", "",
             "| kernel | file | SASS instructions (static) | regs | smem (static) | tensor core |", "|---|---|---|---|---|---|"]
    for r in records:
        cores = " ".join(f"{k} x{v}" for k, v in sorted(r["tensor_core"].items())) or "none"
        lines.append(f"| {r['kernel']} | {r['file']} | {r['static_instructions']} | {r['registers']} | "
                     f"{r['shared_static']} | {cores} |")
    return "\n".join(lines)
