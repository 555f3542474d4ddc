"""CPU autocast (bf16, fp16): patched models and FusedWindowAttention run the fused op on the dtypes autocast gives,
and match the unpatched model under the same autocast within twice its own error against fp64."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import swin_kernels
from swin_kernels import backends
from swin_kernels.backends import Request

from swin_family_models import ALL_CASES, output_tensors

CLASSIFIER = next(case for case in ALL_CASES if case.name == "SwinForImageClassification")
V2 = next(case for case in ALL_CASES if case.name == "Swinv2ForImageClassification")
HALF = [torch.bfloat16, torch.float16]


def fused_backend_for(dtype) -> str | None:
    """The fused backend 'auto' picks for CPU attention in ``dtype`` (None: only the reference runs it)."""
    name, _ = backends.choose("auto", Request("attention", torch.device("cpu"), dtype, (4, 4), 8), warn=False)
    return None if name == "reference" else name


def op_events(fn) -> list[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return [e.name for e in prof.events() if e.name.startswith(("swin_kernels::", "swin_kernels_triton::"))]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("case", [CLASSIFIER, V2], ids=str)
def test_patched_model_under_autocast(case, dtype):
    backend = fused_backend_for(dtype)
    if backend is None:
        pytest.skip(f"no fused backend runs {dtype} attention on the CPU in this build")
    model = case.model(torch.float32).eval()
    patched = swin_kernels.patch(copy.deepcopy(model))
    inputs = case.inputs(torch.float32)
    truth = output_tensors(copy.deepcopy(model).double()(**{k: v.double() for k, v in inputs.items()}))
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        expected = output_tensors(model(**inputs))
        events = op_events(lambda: patched(**inputs))
        actual = output_tensors(patched(**inputs))
    blocks = [m for m in patched.modules() if type(m).__name__.endswith(("SwinLayer", "Swinv2Layer"))]
    assert events.count("swin_kernels::window_attention_fwd") == len(blocks), events
    if not all(torch.isfinite(e).all() for e in expected):
        pytest.skip(f"the unpatched model itself overflows under {dtype} autocast (non-finite outputs): "
                    "nothing to compare against")
    for a, e, t in zip(actual, expected, truth, strict=True):
        assert torch.isfinite(a).all(), f"autocast {dtype}: non-finite outputs where the unpatched model has none"
        ours, theirs = _relative(a, t), _relative(e, t)
        assert ours <= 2 * theirs + 1e-3, f"autocast {dtype}: error {ours:.2e} vs unpatched {theirs:.2e}"


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_fused_window_attention_under_autocast_forward_and_backward(dtype):
    backend = fused_backend_for(dtype)
    if backend is None:
        pytest.skip(f"no fused backend runs {dtype} attention on the CPU in this build")
    torch.manual_seed(0)
    module = swin_kernels.FusedWindowAttention(32, 2, 7, 3)
    reference = copy.deepcopy(module)
    reference.backend = "reference"
    x = torch.randn(2, 15, 10, 32)
    truth_module = copy.deepcopy(reference).double()
    xt = x.double().requires_grad_()
    truth = truth_module(xt)
    truth_grad = torch.autograd.grad(truth.square().sum(), xt)[0]
    results = {}
    for name, m in (("fused", module), ("reference", reference)):
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=dtype):
            events = op_events(lambda: m(xi))
            out = m(xi)
        assert out.dtype == dtype
        grad = torch.autograd.grad(out.float().square().sum(), xi)[0]
        results[name] = (out, grad, events)
    assert "swin_kernels::window_attention_fwd" in results["fused"][2]
    for index, what, want in ((0, "output", truth), (1, "input gradient", truth_grad)):
        ours, theirs = _relative(results["fused"][index], want), _relative(results["reference"][index], want)
        assert ours <= 2 * theirs + 1e-3, f"{dtype} {what}: error {ours:.2e} vs reference's {theirs:.2e}"
