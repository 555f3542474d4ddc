"""``python -m swin_kernels``: what this installation can run, and a quick check that it computes the right thing.

Prints the versions, the CPU kernel build chosen, the GPU and Triton when present, every backend with why it can or
cannot run here, then checks each runnable backend on each device it runs on against the unfused reference in
float64 on the CPU: a tiny shifted, padded call of the fused attention (forward and the gradients of qkv, the pad
row and the bias) in every dtype the backend takes among float64, float32 and bfloat16, and the fused partition
(forward and backward). Exit status 0 when every check passes, 1 when any runnable backend gives a wrong result or
fails; a backend that cannot run here is reported, not failed.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass

import torch

from . import __version__, backends, reference
from .backends import BACKEND_NAMES, Request
from .functional import shifted_window_attention, window_partition

# (batch, spatial sizes, heads, head_dim, window, shift, roll_before_pad): all pad and shift; the second has a
# rectangular window and timm's order (roll, then pad); the third is a (D, H, W) volume. head_dim 16: the cuda
# kernels need a multiple of 16.
CASES = ((2, (9, 10), 2, 16, (4, 4), (2, 2), False), (1, (7, 11), 2, 16, (3, 5), (1, 2), True),
         (1, (3, 5, 6), 2, 16, (2, 3, 4), (1, 1, 2), False))
DTYPES = (torch.float64, torch.float32, torch.bfloat16)
# relative to the reference's largest magnitude; bfloat16 passes within twice PyTorch's own error plus this floor
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
LOW_PRECISION_FLOOR = 1e-3


@dataclass
class Check:
    backend: str
    device: str
    what: str
    dtype: torch.dtype | None
    error: float | None = None  # worst relative error over the output and every gradient
    tolerance: float | None = None
    failure: str | None = None  # an exception's message

    @property
    def passed(self) -> bool:
        return self.failure is None and self.error is not None and self.error <= self.tolerance

    def line(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.") if self.dtype is not None else ""
        head = f"  {self.backend:9s} {self.device:5s} {dtype:8s} {self.what:45s}"
        if self.failure is not None:
            return f"{head} FAILED: {self.failure}"
        return f"{head} error {self.error:.1e} (tolerance {self.tolerance:.0e})  {'ok' if self.passed else 'WRONG'}"


def _relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    if actual.shape != expected.shape:
        return float("inf")
    expected = expected.detach().double().cpu()
    err = (actual.detach().double().cpu() - expected).abs().max().item()
    return err / max(expected.abs().max().item(), 1e-30)


def _case_label(case, heads: bool = True) -> str:
    b, sizes, n, d, m, s, roll_first = case

    def text(v):
        return "x".join(map(str, v))

    return (f"B{b} {text(sizes)}" + (f" h{n} d{d}" if heads else "") + f" M{text(m)} s{text(s)}"
            + (" roll first" if roll_first else ""))


def _attention_inputs(case):
    b, sizes, heads, d, window, _, _ = case
    tokens, c3 = math.prod(window), 3 * heads * d
    gen = torch.Generator().manual_seed(0)
    return ({"qkv": torch.randn(b, *sizes, c3, generator=gen, dtype=torch.float64),
             "pad_qkv": torch.randn(c3, generator=gen, dtype=torch.float64),
             "bias": torch.randn(heads, tokens, tokens, generator=gen, dtype=torch.float64)},
            torch.randn(b, *sizes, heads * d, generator=gen, dtype=torch.float64))


def _run_attention(backend: str | None, case, tensors, grad_out, device, dtype) -> list[torch.Tensor]:
    """Output and input gradients through ``backend``; None: the oracle itself (swin_kernels.reference, called
    directly, so a broken dispatch or reference backend cannot agree with itself)."""
    _, _, heads, _, m, s, roll_first = case
    leaves = {k: v.to(device, dtype).requires_grad_() for k, v in tensors.items()}
    if backend is None:
        out = reference.shifted_window_attention(leaves["qkv"], heads, m, s, leaves["pad_qkv"],
                                                 leaves["bias"], None, 0.0, roll_first)
    else:
        out = shifted_window_attention(leaves["qkv"], heads, m, s, roll_before_pad=roll_first,
                                       pad_qkv=leaves["pad_qkv"], bias=leaves["bias"], backend=backend)
    grads = torch.autograd.grad(out, list(leaves.values()), grad_out.to(device, dtype), materialize_grads=True)
    return [out, *grads]


def check_attention(backend: str, case, device: str, dtype: torch.dtype) -> Check:
    check = Check(backend, device, f"attention {_case_label(case)}", dtype)
    tensors, grad_out = _attention_inputs(case)
    try:
        expected = _run_attention(None, case, tensors, grad_out, "cpu", torch.float64)
        actual = _run_attention(backend, case, tensors, grad_out, device, dtype)
        errors = [_relative(a, e) for a, e in zip(actual, expected)]
        check.error = max(errors)
        if dtype in TOLERANCE:
            check.tolerance = TOLERANCE[dtype]
        else:  # each result within twice the error of PyTorch's own computation in this dtype
            own = _run_attention(None, case, tensors, grad_out, device, dtype)
            margins = [e - 2 * _relative(o, x) for e, o, x in zip(errors, own, expected)]
            worst = max(range(len(errors)), key=lambda i: margins[i])
            check.error = errors[worst]
            check.tolerance = errors[worst] - margins[worst] + LOW_PRECISION_FLOOR
    except Exception as error:  # a crash is a failed check, reported with the rest
        check.failure = _describe(error)
    return check


def check_partition(backend: str, case, device: str) -> Check:
    """The fused roll + partition and its backward (the reverse) against the reference: pure data movement, exact."""
    b, sizes, _, _, m, s, roll_first = case
    check = Check(backend, device, f"partition {_case_label(case, heads=False)}", torch.float32, tolerance=0.0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(b, *sizes, 8, generator=gen)
    try:
        results = []
        for name, where in ((None, "cpu"), (backend, device)):
            leaf = x.to(where).requires_grad_()
            if name is None:  # the oracle
                windows = reference.window_partition(leaf, m, s, roll_first)
            else:
                windows = window_partition(leaf, m, s, name, roll_before_pad=roll_first)
            weights = torch.arange(windows.numel(), dtype=windows.dtype).reshape(windows.shape).to(where)
            results.append([windows, torch.autograd.grad(windows, leaf, weights)[0]])
        check.error = max(_relative(a, e) for a, e in zip(results[1], results[0]))
    except Exception as error:
        check.failure = _describe(error)
    return check


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())
    where = traceback.extract_tb(error.__traceback__)[-1]
    return f"{type(error).__name__}: {text[:300]} ({os.path.basename(where.filename)}:{where.lineno})"


def devices() -> list[str]:
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def run_checks(names=BACKEND_NAMES, progress=None) -> list[Check]:
    """Every check of every backend in ``names`` that can run here, on every device and dtype it takes."""
    checks = []
    for name in names:
        if backends.unavailable_reason(name) is not None:
            continue
        for device in devices():
            for case in CASES:
                window = case[4]
                for dtype in DTYPES:
                    request = Request("attention", torch.device(device), dtype, window, case[3])
                    if backends.reason(name, request) is None:
                        checks.append(check_attention(name, case, device, dtype))
                        if progress:
                            progress(checks[-1].line())
                if backends.reason(name, Request("partition", torch.device(device), torch.float32, window)) is None:
                    checks.append(check_partition(name, case, device))
                    if progress:
                        progress(checks[-1].line())
    return checks


# ------------------------------------------------------------------------------------------ what is installed
def _safely(describe) -> str:
    try:
        return describe()
    except Exception as error:
        return f"unknown ({type(error).__name__}: {error})"


def _cpu() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads"


def _cpp_build() -> str:
    from .ops import cpp

    if cpp.unavailable_reason() is not None:
        return "none (the cpp backend cannot run: see below)"
    by_build: dict[str, list[str]] = {}
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        by_build.setdefault(cpp.kernel_isa(dtype), []).append(str(dtype).removeprefix("torch."))
    chosen = os.environ.get(cpp.ISA_ENV)
    builds = "; ".join(f"{isa} for {', '.join(names)}" for isa, names in by_build.items())
    return builds + (f" ({cpp.ISA_ENV}={chosen})" if chosen else " (the widest this CPU runs)")


def _gpu() -> str:
    if not torch.cuda.is_available():
        return "none" + ("" if torch.version.cuda else " (this torch is built without CUDA)")
    names = []
    for i in range(torch.cuda.device_count()):
        major, minor = torch.cuda.get_device_capability(i)
        names.append(f"{i}: {torch.cuda.get_device_name(i)} (compute capability {major}.{minor})")
    text = "; ".join(names)
    from .ops import _ext, cuda

    if _ext.unavailable_reason() is None:
        archs = cuda.built_archs()
        text += "; extension's CUDA kernels: " + (archs.describe() if archs else "none found in the extension")
    return text


def _triton() -> str:
    try:
        import triton
    except ImportError:
        return "not installed"
    interpret = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    return f"{triton.__version__}" + (" (TRITON_INTERPRET=1: kernels run on CPU tensors in the interpreter)"
                                      if interpret else "")


def report_lines() -> list[str]:
    cuda = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only build"
    lines = [
        f"swin-kernels {__version__} self-check",
        f"  python   {platform.python_version()} ({sys.executable}), {platform.system()} {platform.machine()}",
        f"  torch    {torch.__version__} ({cuda})",
        f"  CPU      {_safely(_cpu)}",
        f"  cpp kernel build: {_safely(_cpp_build)}",
        f"  GPU      {_safely(_gpu)}",
        f"  Triton   {_safely(_triton)}",
        "backends:",
    ]
    for name in BACKEND_NAMES:
        why = _safely(lambda: backends.unavailable_reason(name))
        lines.append(f"  {name:9s} " + ("can run here" if why is None else f"cannot run here: {why}"))
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swin_kernels", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", choices=BACKEND_NAMES,
                        help="check only this backend (repeatable; default: every one that can run here)")
    args = parser.parse_args(argv)
    begin = time.monotonic()
    for line in report_lines():
        print(line, flush=True)
    print("checks against the float64 reference (forward, and the gradients of every input):", flush=True)
    checks = run_checks(args.backend or BACKEND_NAMES, progress=lambda line: print(line, flush=True))
    failed = [c for c in checks if not c.passed]
    seconds = time.monotonic() - begin
    if not checks:
        print(f"no backend could be checked here ({seconds:.1f} s)")
        return 1
    if failed:
        names = ", ".join(dict.fromkeys(c.backend for c in failed))
        print(f"FAILED: {len(failed)} of {len(checks)} checks ({names}) in {seconds:.1f} s")
        return 1
    print(f"all {len(checks)} checks pass ({seconds:.1f} s)")
    return 0
