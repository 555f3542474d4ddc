"""fp32 attention on the triton backend: 3xTF32 by default, TF32 when torch's switch asks, IEEE on request.

The interpreter multiplies fp32 tiles exactly whatever tl.dot's input_precision says, so the plain interpreter
checks only prove the plumbing. Two more checks make it real: the interpreter's dot is replaced by one that rounds
its operands as the tensor cores do (TF32: 10-bit mantissas; 3xTF32: the split Triton compiles, a rounded high
part and its residual, three products), where 3xTF32 must still meet the fp32 tolerance and TF32 must not; and
the kernels compiled for sm_90 / sm_80 must hold three TF32 tensor-core products per tl.dot on the 3xTF32 path
and one on the TF32 path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from swin_kernels import backends

from backend_checks import ATTENTION_CASES, check_attention

BACKEND = "triton"
_REASON = backends.unavailable_reason(BACKEND)
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"triton backend unavailable: {_REASON}")
ENV = "SWIN_KERNELS_FP32"


def _interpreted() -> bool:
    from swin_kernels.ops.triton.configs import INTERPRET

    return INTERPRET


@pytest.fixture
def torch_switch():
    """Restores torch's fp32 matmul switch after the test."""
    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip("this torch has no fp32_precision switch")
    previous = matmul.fp32_precision
    yield matmul
    matmul.fp32_precision = previous


def test_precision_default_switch_and_request(monkeypatch, torch_switch):
    from swin_kernels.ops.triton import fp32_precision

    monkeypatch.delenv(ENV, raising=False)
    torch_switch.fp32_precision = "none"
    assert fp32_precision() == "tf32x3"  # torch never asked for anything
    torch.set_float32_matmul_precision("highest")  # torch's default, reported as "ieee": not a request for IEEE
    assert torch_switch.fp32_precision == "ieee" and fp32_precision() == "tf32x3"
    torch.set_float32_matmul_precision("high")
    assert fp32_precision() == "tf32"
    torch_switch.fp32_precision = "tf32"
    assert fp32_precision() == "tf32"
    for value in ("ieee", "tf32x3", "tf32", " IEEE "):  # the library's switch wins over torch's
        monkeypatch.setenv(ENV, value)
        assert fp32_precision() == value.strip().lower()
    monkeypatch.setenv(ENV, "fp64")
    with pytest.raises(ValueError, match="SWIN_KERNELS_FP32='fp64': expected one of tf32x3, tf32, ieee"):
        fp32_precision()


def test_plans_of_each_precision():
    from swin_kernels.ops.triton import configs

    plans = {p: configs.attention_plan(144, 32, torch.float32, p) for p in configs.FP32_PRECISIONS}
    assert configs.attention_plan(144, 32, torch.float32) == plans["tf32x3"]  # the default
    assert [(p.input_precision, p.path, p.fma, p.block) for p in plans.values()] == [
        ("tf32x3", "tf32x3", False, 64), ("tf32", "tf32", False, 64), ("ieee", "fp32", True, 32)]
    for dtype, path in ((torch.bfloat16, "bf16"), (torch.float16, "fp16"), (torch.float64, "fp64")):
        for p in configs.FP32_PRECISIONS:  # the other dtypes have one path each
            plan = configs.attention_plan(144, 32, dtype, p)
            assert (plan.input_precision, plan.path) == ("ieee", path)
    # 3xTF32 has no spill-free tiling beyond head_dim 64: fp32 there keeps fp32 accuracy on the exact path
    assert configs.attention_plan(49, 128, torch.float32).input_precision == "ieee"
    assert configs.attention_plan(49, 128, torch.float32, "tf32").input_precision == "tf32"
    with pytest.raises(ValueError, match="fp32 precision must be one of"):
        configs.attention_plan(49, 32, torch.float32, "bf16x3")
    for p in configs.FP32_PRECISIONS:  # every fp32 plan the compile report covers has tiles
        for tokens, head_dim, volume in ((49, 32, False), (144, 128, False), (576, 64, False), (343, 32, True)):
            plan = configs.attention_plan(tokens, head_dim, torch.float32, p, volume)
            assert plan.supported and len(plan.shapes) == 3


def _spy_precisions(monkeypatch) -> list:
    """The input_precision of every forward launch (direct eager calls and the op alike)."""
    from swin_kernels.ops.triton import attention_forward, eager, library

    seen = []
    original = attention_forward.window_attention_forward

    def spy(*args):
        seen.append(args[-1].input_precision)
        return original(*args)

    monkeypatch.setattr(eager, "window_attention_forward", spy)
    monkeypatch.setattr(library, "window_attention_forward", spy)
    return seen


@pytest.mark.parametrize("request_precision", [None, "ieee", "tf32x3"])
def test_fp32_within_1e_5_on_each_exact_precision(monkeypatch, torch_switch, request_precision):
    """The fp32 tolerance (1e-5 relative to the fp64 reference) on the default path and on each request; the call
    takes the precision asked for."""
    torch_switch.fp32_precision = "none"
    if request_precision is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, request_precision)
    seen = _spy_precisions(monkeypatch)
    device = "cpu" if _interpreted() else "cuda"
    check_attention(BACKEND, ATTENTION_CASES[2], torch.float32, device)
    assert set(seen) == {request_precision or "tf32x3"}


# ------------------------------------------------------------------ tensor-core rounding under the interpreter
def _tf32_truncated(x: np.ndarray) -> np.ndarray:
    """What a TF32 tensor core reads of fp32 data: the low 13 mantissa bits dropped."""
    return (x.astype(np.float32).view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)


def _tf32_rounded(x: np.ndarray) -> np.ndarray:
    """cvt.rna.tf32.f32: to the nearest TF32 value, ties away from zero."""
    bits = x.astype(np.float32).view(np.uint32)
    return ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)


def emulated_dot(a: np.ndarray, b: np.ndarray, precision: str) -> np.ndarray:
    """a @ b as the compiled kernels compute it from fp32 operands (fp32 accumulation): "tf32" one product of the
    truncated operands; "tf32x3" Triton's split (big = rna(x), small = x - big), small·big + big·small, then
    big·big (the order of its F32DotTC pass)."""
    if precision == "tf32":
        return np.matmul(_tf32_truncated(a), _tf32_truncated(b))
    a_big, b_big = _tf32_rounded(a), _tf32_rounded(b)
    a_small, b_small = _tf32_truncated(a - a_big), _tf32_truncated(b - b_big)
    out = np.matmul(a_small, b_big) + np.matmul(a_big, b_small)
    return out + np.matmul(a_big, b_big)


@pytest.fixture
def tensor_core_rounding(monkeypatch):
    """The interpreter's fp32 dots rounded as the tensor cores round them; yields the precisions it saw."""
    if not _interpreted():
        pytest.skip("the interpreter's dot is replaced; on a GPU the tensor cores round for real")
    from triton.runtime import interpreter

    seen = []
    original = interpreter.InterpreterBuilder.create_dot

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        name = str(input_precision).rsplit(".", 1)[-1].split(":")[0].strip().lower()
        if a.data.dtype == np.float32 and b.data.dtype == np.float32 and name in ("tf32", "tf32x3"):
            seen.append(name)
            product = emulated_dot(a.data, b.data, name).astype(d.data.dtype)
            return interpreter.TensorHandle(product + d.data, d.dtype.scalar)
        return original(self, a, b, d, input_precision, max_num_imprecise_acc)

    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_dot", create_dot)
    return seen


def test_emulated_rounding_is_what_it_claims():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((64, 32)).astype(np.float32), rng.standard_normal((32, 64)).astype(np.float32)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(exact).max()
    tf32 = np.abs(emulated_dot(a, b, "tf32") - exact).max() / scale
    tf32x3 = np.abs(emulated_dot(a, b, "tf32x3") - exact).max() / scale
    assert 1e-4 < tf32 < 3e-3 and tf32x3 < 2e-6  # ~2^-10 against ~fp32's own rounding
    assert np.all(_tf32_rounded(np.float32([1 + 2**-11])) == np.float32(1 + 2**-10))  # ties away
    assert np.all(_tf32_truncated(np.float32([1 + 2**-10 + 2**-11])) == np.float32(1 + 2**-10))


def test_3xtf32_meets_the_fp32_tolerance_with_tensor_core_rounding(monkeypatch, torch_switch, tensor_core_rounding):
    torch_switch.fp32_precision = "none"
    monkeypatch.delenv(ENV, raising=False)
    check_attention(BACKEND, ATTENTION_CASES[2], torch.float32, "cpu")
    assert tensor_core_rounding and set(tensor_core_rounding) == {"tf32x3"}


def test_tf32_misses_the_fp32_tolerance_with_tensor_core_rounding(monkeypatch, torch_switch, tensor_core_rounding):
    """The emulation bites: plain TF32 fails 1e-5 (so the test above passes on 3xTF32's merit), and stays within
    TF32's own error (what torch's switch accepts)."""
    torch_switch.fp32_precision = "tf32"
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(AssertionError):
        check_attention(BACKEND, ATTENTION_CASES[2], torch.float32, "cpu")
    check_attention(BACKEND, ATTENTION_CASES[2], torch.float32, "cpu", low_precision_floor=2e-3)
    assert set(tensor_core_rounding) == {"tf32"}


# --------------------------------------------------------------------------- the compiled code (sm_90, sm_80)
# Real compilation needs a process where TRITON_INTERPRET was never set (conftest sets it for this one).
SCRIPT = r"""
import dataclasses, json, re, sys
from tools import compile_report as report
rows = []
for job in report._attention_jobs(report.QUICK_PLANS, dropout_too=False):
    if job.dtype not in ("tf32x3", "fp32") or (job.arch == 80 and job.kernel != "attention_fwd"):
        continue
    variants = [("plan", job)]
    if job.dtype == "tf32x3":  # the same tiles with one TF32 product per dot
        constexprs = dict(job.constexprs, INPUT_PRECISION="tf32")
        variants.append(("tf32", dataclasses.replace(job, constexprs=tuple(sorted(constexprs.items())))))
    for variant, built in variants:
        compiled = report.build(built)
        ttgir, ptx = compiled.asm["ttgir"], compiled.asm["ptx"]
        rows.append({"kernel": job.kernel, "arch": job.arch, "path": job.dtype, "variant": variant,
                     "precision": dict(built.constexprs)["INPUT_PRECISION"],
                     "dots": len(re.findall(r"= (?:tt\.dot|ttng\.warp_group_dot) ", ttgir)),
                     "tf32_mma": len(re.findall(r"\b(?:mma\.sync\.aligned|wgmma\.mma_async)\S*\.tf32\.tf32", ptx)),
                     "mma": len(re.findall(r"\b(?:mma\.sync\.aligned|wgmma\.mma_async)", ptx)),
                     "split": len(re.findall(r"cvt\.rna\.tf32\.f32", ptx))})
print(json.dumps(rows))
"""
SOURCE_DOTS = {"attention_fwd": 2, "attention_dkdv": 4, "attention_dq": 3}  # tl.dot calls per kernel body


def test_compiled_3xtf32_holds_three_tf32_products_per_dot():
    pytest.importorskip("triton")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600,
                            cwd=root)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {(r["kernel"], r["arch"], r["path"], r["variant"]): r
            for r in json.loads(result.stdout.strip().splitlines()[-1])}
    # sm_90: 3 kernels on the fp32 paths' plans (3xTF32, exact) and 3xTF32's tiles at TF32; sm_80: the forward
    assert len(rows) == 3 * 3 + 3
    for (kernel, arch, path, variant), row in rows.items():
        if path == "fp32":  # the exact plan: products on the FMA units
            assert row["precision"] == "ieee" and row["mma"] == 0 and row["tf32_mma"] == 0
            continue
        if variant == "tf32":
            continue
        three, one = row, rows[(kernel, arch, path, "tf32")]
        assert three["precision"] == "tf32x3"  # the default fp32 plan is 3xTF32
        # TTGIR: every source dot becomes 3 TF32 dots on the 3xTF32 path, stays 1 on TF32
        assert one["dots"] == SOURCE_DOTS[kernel] and three["dots"] == 3 * SOURCE_DOTS[kernel]
        # PTX: every tensor-core instruction takes TF32 operands, 3x as many; only 3xTF32 splits its operands
        assert one["tf32_mma"] == one["mma"] > 0 and three["tf32_mma"] == three["mma"] == 3 * one["mma"]
        assert three["split"] > 0 and one["split"] == 0
