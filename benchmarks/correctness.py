"""The demo's check of every backend that runs here against the fp64 reference, forward and backward.

Awkward shapes on purpose: padding on one or both sides, H != W, a window larger than the map, N = 144.
The core (``shifted_window_attention``) is checked on all of them, the module (``FusedWindowAttention``,
with the block's clamping) against the official-structure block on two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import swin_kernels
from swin_kernels import backends
from swin_kernels.backends import Request
from swin_kernels.reference_model import SwinTransformerBlock

# (batch, height, width, heads, head_dim, window, shift[, roll_before_pad])
CORE_CASES = [
    (2, 14, 14, 3, 32, 7, 3),  # Swin-T-like, shifted
    (3, 9, 13, 2, 16, 4, 2),  # padded both ways, H != W, odd batch
    (1, 11, 12, 2, 16, 6, 5),  # shift = window - 1, padded height only
    (1, 5, 3, 1, 16, 7, 3),  # window larger than the map: mostly padding
    (1, 12, 12, 2, 32, 12, 6),  # N = 144, the 384² window
    (2, 10, 11, 2, 16, (3, 6), (1, 4), True),  # rectangular, per-axis shifts, rolled before padding (timm)
]
# (batch, height, width, channels, heads, window, shift) for the module, clamping included
MODULE_CASES = [(2, 10, 17, 64, 2, 7, 3), (1, 6, 6, 32, 1, 7, 3)]
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}  # relative to the reference's largest magnitude
# fp16 / bf16 pass when their error against the fp64 reference is at most twice PyTorch's own error in that
# dtype (the reference run in it) plus this floor, relative
LOW_PRECISION_FLOOR = 1e-3
DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


@dataclass
class CheckResult:
    backend: str
    what: str  # "core" or "module"
    case: str
    dtype: torch.dtype
    max_abs_error: float  # over the output and every gradient
    relative_error: float
    passed: bool
    skipped: str | None = None
    device: str = "cpu"


def _relative(actual: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    err = (actual.double() - expected.double()).abs().max().item()
    return err, err / max(expected.double().abs().max().item(), 1e-30)


def _worst(pairs) -> tuple[float, float]:
    errors = [_relative(a, e) for a, e in pairs]
    return max(e[0] for e in errors), max(e[1] for e in errors)


def _passes(actual, expected, dtype, own=None) -> tuple[float, float, bool]:
    """(worst absolute, worst relative error, passed): fp32/fp64 against TOLERANCE; fp16/bf16 against twice
    ``own`` (PyTorch's result in that dtype) plus the floor."""
    worst_abs, worst_rel = _worst(zip(actual, expected))
    if dtype in TOLERANCE:
        return worst_abs, worst_rel, worst_rel <= TOLERANCE[dtype]
    passed = all(_relative(a, e)[1] <= 2 * _relative(o, e)[1] + LOW_PRECISION_FLOOR
                 for a, e, o in zip(actual, expected, own))
    return worst_abs, worst_rel, passed


def check_core(backend: str, case, dtype: torch.dtype, device) -> CheckResult:
    b, h, w, heads, d, m, s, *rest = case
    roll_before_pad = bool(rest and rest[0])
    text = {k: f"{v[0]}x{v[1]}" if isinstance(v, tuple) else str(v) for k, v in (("m", m), ("s", s))}
    label = f"B{b} {h}x{w} h{heads} d{d} M{text['m']} s{text['s']}" + (" roll first" if roll_before_pad else "")
    window = m if isinstance(m, tuple) else (m, m)
    tokens = window[0] * window[1]
    reason = backends.reason(backend, Request("attention", torch.device(device), dtype, window, d))
    if reason is not None:
        return CheckResult(backend, "core", label, dtype, float("nan"), float("nan"), False, reason, str(device))
    gen = torch.Generator().manual_seed(0)
    c3 = 3 * heads * d
    base = {"qkv": torch.randn(b, h, w, c3, generator=gen, dtype=torch.float64),
            "pad_qkv": torch.randn(c3, generator=gen, dtype=torch.float64),
            "bias": torch.randn(heads, tokens, tokens, generator=gen, dtype=torch.float64)}
    grad_out = torch.randn(b, h, w, heads * d, generator=gen, dtype=torch.float64)

    def run(name, tensors):
        leaves = {k: v.detach().to(device).requires_grad_() for k, v in tensors.items()}
        out = swin_kernels.shifted_window_attention(leaves["qkv"], heads, m, s, roll_before_pad=roll_before_pad,
                                                    pad_qkv=leaves["pad_qkv"], bias=leaves["bias"], backend=name)
        grads = torch.autograd.grad(out, list(leaves.values()), grad_out.to(device, out.dtype),
                                    materialize_grads=True)
        return [out, *grads]

    expected = run("reference", base)
    low = {k: v.to(dtype) for k, v in base.items()}
    actual = run(backend, low)
    own = None if dtype in TOLERANCE else run("reference", low)
    worst_abs, worst_rel, passed = _passes(actual, expected, dtype, own)
    return CheckResult(backend, "core", label, dtype, worst_abs, worst_rel, passed, device=str(device))


def check_module(backend: str, case, dtype: torch.dtype, device) -> CheckResult:
    b, h, w, c, heads, m, s = case
    label = f"module B{b} {h}x{w} C{c} h{heads} M{m} s{s}"
    torch.manual_seed(0)
    block = SwinTransformerBlock(c, heads, m, s).double().to(device)
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_()
    x = torch.randn(b, h, w, c, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(device)
    grad_out = torch.randn_like(x)

    def run(name):
        fused = swin_kernels.FusedWindowAttention.from_window_attention(block.attn, s, backend=name).to(dtype)
        xd = x.to(dtype).requires_grad_()
        out = fused(xd)
        return [out, torch.autograd.grad(out, xd, grad_out.to(dtype))[0]]

    try:
        actual = run(backend)
    except swin_kernels.BackendUnavailableError as error:
        return CheckResult(backend, "module", label, dtype, float("nan"), float("nan"), False, str(error), str(device))
    x64 = x.clone().requires_grad_()
    out64 = block.attention_branch(x64)
    expected = [out64, torch.autograd.grad(out64, x64, grad_out)[0]]
    own = None if dtype in TOLERANCE else run("reference")
    worst_abs, worst_rel, passed = _passes(actual, expected, dtype, own)
    return CheckResult(backend, "module", label, dtype, worst_abs, worst_rel, passed, device=str(device))


def check_all(progress=None) -> list[CheckResult]:
    """Every available backend on every device it runs on here, in every dtype it supports, every case."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = []
    for backend in swin_kernels.available_backends():
        for device in devices:
            if backends.reason(backend, Request("attention", torch.device(device), torch.float32, (7, 7), 32)):
                continue  # e.g. a CPU backend asked about GPU tensors
            for dtype in DTYPES:
                if progress:
                    progress(f"checking backend {backend} on {device} ({str(dtype).removeprefix('torch.')}) "
                             "against the reference")
                results += [check_core(backend, case, dtype, device) for case in CORE_CASES]
                results += [check_module(backend, case, dtype, device) for case in MODULE_CASES]
    return results
