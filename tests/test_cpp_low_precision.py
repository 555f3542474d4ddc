"""The "cpp" backend in bfloat16 and float16, on every instruction-set build of the kernels this CPU runs.

The half types compute in fp32: rows are converted as a window is staged and results rounded once as they are
stored. So besides the shared accuracy checks (within twice PyTorch's own error in that dtype), the conversion
path must give exactly the fp32 path's results rounded to the dtype, and the conversions must be exact for every
value. The avx512bf16 build's bf16 forward multiplies bf16 pairs natively instead (P rounded to bf16, as
PyTorch's bf16 attention rounds it, and subnormal inputs read as zero): it is held to the accuracy checks.
"""

import os

import pytest
import torch

from swin_kernels import FusedWindowAttention
from swin_kernels.ops import _ext, cpp

from backend_checks import (
    ATTENTION_CASES,
    GEOMETRY_CASES,
    VOLUME_CASES,
    AttentionCase,
    assert_low_precision_close,
    attention_inputs,
    check_attention,
    check_bias_grad_deterministic,
    run_attention,
)

BACKEND = "cpp"
HALF_TYPES = [torch.bfloat16, torch.float16]
ISAS = cpp.runnable_isas()

if _ext.unavailable_reason() is not None and os.environ.get("SWIN_KERNELS_SKIP_EXTENSION") == "1":
    pytest.skip("the C++ extension was not built (SWIN_KERNELS_SKIP_EXTENSION=1)", allow_module_level=True)


@pytest.fixture(params=ISAS)
def isa(request, monkeypatch):
    """Runs the test on one build (SWIN_KERNELS_CPU_ISA), each build this CPU has."""
    assert cpp.unavailable_reason() is None, f"the cpp backend cannot run: {cpp.unavailable_reason()}"
    monkeypatch.setenv(cpp.ISA_ENV, request.param)
    return request.param


def native_bf16(isa: str, dtype: torch.dtype) -> bool:
    return isa == "avx512bf16" and dtype == torch.bfloat16


# ------------------------------------------------------------------------------------ against the reference
@pytest.mark.parametrize("dtype", HALF_TYPES, ids=str)
@pytest.mark.parametrize("case", ATTENTION_CASES + GEOMETRY_CASES + VOLUME_CASES[:3], ids=str)
def test_attention_matches_reference(isa, case, dtype):
    check_attention(BACKEND, case, dtype)  # forward + every gradient, outputs poisoned with NaN first


@pytest.mark.parametrize("dtype", HALF_TYPES, ids=str)
def test_fused_window_attention_matches_reference(isa, dtype):
    torch.manual_seed(0)
    reference = FusedWindowAttention(32, 2, window_size=7, shift_size=3, backend="reference").double()
    with torch.no_grad():
        reference.relative_position_bias_table.normal_()
    modules = {"64": reference}
    for name, backend in (("torch", "reference"), ("cpp", BACKEND)):
        modules[name] = FusedWindowAttention(32, 2, window_size=7, shift_size=3, backend=backend).to(dtype)
        modules[name].load_state_dict(reference.state_dict())
    x = torch.randn(2, 15, 17, 32, dtype=torch.float64)  # padded on both sides, H != W
    grad = torch.randn(2, 15, 17, 32, dtype=torch.float64)
    results = {}
    for name, module in modules.items():
        xi = x.to(module.qkv.weight.dtype, copy=True).requires_grad_()
        out = module(xi)
        out.backward(grad.to(out.dtype))
        results[name] = [out, xi.grad] + [p.grad for p in module.parameters()]
    names = ["output", "dx"] + [f"d{n}" for n, _ in reference.named_parameters()]
    for what, ours, torchs, exact in zip(names, results["cpp"], results["torch"], results["64"]):
        assert ours.dtype == dtype
        assert_low_precision_close(ours, torchs, exact, f"cpp {dtype} module {what}")


# --------------------------------------------------------------------------------------- exact conversions
def every_value(dtype: torch.dtype) -> torch.Tensor:
    """All 65536 bit patterns of the dtype but the NaNs."""
    values = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    return values[~values.isnan()]


@pytest.mark.parametrize("head_dim", [13, 16], ids=lambda d: f"d{d}")  # row tails / whole vectors (and pairs)
@pytest.mark.parametrize("dtype", HALF_TYPES, ids=str)
def test_conversions_are_exact_for_every_value(isa, dtype, head_dim):
    """With one token per window (a 1x1 window) P = 1, so out = v and dv = dO exactly: every value has to come
    through the conversion to fp32 and the rounding back unchanged, in the forward and the backward."""
    values = every_value(dtype)
    width = 64
    height = -(-values.numel() // (width * head_dim))
    v = torch.zeros(height * width * head_dim, dtype=dtype)
    v[: values.numel()] = values
    v = v.view(1, height, width, head_dim)
    qkv = torch.cat([torch.randn(1, height, width, 2 * head_dim).to(dtype), v], dim=-1)
    ops = torch.ops.swin_kernels
    out, lse = ops.window_attention_fwd(qkv, None, None, 1, [1, 1], [0, 0], False, 0.25)
    expected = v
    if native_bf16(isa, dtype) and head_dim % 2 == 0:  # vdpbf16ps reads subnormals as zero
        expected = torch.where(v.float().abs() < torch.finfo(torch.float32).tiny, torch.zeros_like(v), v)
    assert torch.equal(out, expected)
    grad_qkv, _, _ = ops.window_attention_bwd(v, qkv, None, None, lse, 1, [1, 1], [0, 0], False, 0.25)
    assert torch.equal(grad_qkv[..., 2 * head_dim:], v)


EXACT_CASES = [ATTENTION_CASES[1], ATTENTION_CASES[2], ATTENTION_CASES[7], GEOMETRY_CASES[2]]


@pytest.mark.parametrize("dtype", HALF_TYPES, ids=str)
@pytest.mark.parametrize("case", EXACT_CASES, ids=str)
def test_half_types_run_the_fp32_path_rounded_once(isa, case, dtype):
    """out, lse and every gradient equal the fp32 kernel's on the same (upcast) inputs, rounded to the dtype
    by torch: conversion path and fp32 path do the same arithmetic. The native bf16 forward rounds P to bf16,
    so there only the backward is compared (from the fp32 forward's lse)."""
    inputs = {k: t.detach() for k, t in attention_inputs(case, dtype).items()}
    grad_out = torch.randn(case.batch, case.height, case.width, case.channels,
                           generator=torch.Generator().manual_seed(2)).to(dtype)
    ops = torch.ops.swin_kernels
    geometry = (case.heads, *case.op_geometry(), 0.3)
    low = (inputs["qkv"], inputs["pad_qkv"], inputs["bias"])
    high = tuple(t.float() for t in low)
    out_32, lse_32 = ops.window_attention_fwd(*high, *geometry)
    out, lse = ops.window_attention_fwd(*low, *geometry)
    assert lse.dtype == torch.float32
    if not native_bf16(isa, dtype):
        assert torch.equal(out, out_32.to(dtype)), "the forward differs from the fp32 path"
        assert torch.equal(lse, lse_32)
    grads_32 = ops.window_attention_bwd(grad_out.float(), *high, lse_32, *geometry)
    grads = ops.window_attention_bwd(grad_out, *low, lse_32, *geometry)
    for name, ours, theirs in zip(("qkv", "pad_qkv", "bias"), grads, grads_32):
        assert ours.dtype == dtype
        assert torch.equal(ours, theirs.to(dtype)), f"d{name} differs from the fp32 path"


# ------------------------------------------------------------------------------------------- determinism
MANY_WINDOWS = AttentionCase(3, 56, 49, 3, 32, 7, 3)  # 168 windows: more than the 128 partial-sum chunks


def test_bf16_gradients_are_bit_identical_across_runs_and_thread_counts():
    check_bias_grad_deterministic(BACKEND, MANY_WINDOWS, dtype=torch.bfloat16)
    grad_out = torch.randn(3, 56, 49, 96, generator=torch.Generator().manual_seed(5)).bfloat16()
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            results.append(run_attention(BACKEND, MANY_WINDOWS, attention_inputs(MANY_WINDOWS, torch.bfloat16),
                                         grad_out))
    finally:
        torch.set_num_threads(threads)
    (out, grads), others = results[0], results[1:]
    for other_out, other_grads in others:
        assert torch.equal(out, other_out)
        for name in grads:
            assert torch.equal(grads[name], other_grads[name]), f"d{name} depends on the thread count"


# ------------------------------------------------------------------------------------ op registration
def opcheck_inputs(dtype, case=AttentionCase(2, 5, 7, 2, 8, 3, 1)):
    inputs = attention_inputs(case, dtype)
    return case, inputs["qkv"], inputs["pad_qkv"], inputs["bias"]


@pytest.mark.parametrize("optional", ["all", "no_pad", "no_bias"])
def test_opcheck_attention_forward_bf16(optional):
    case, qkv, pad, bias = opcheck_inputs(torch.bfloat16)
    pad = None if optional == "no_pad" else pad
    bias = None if optional == "no_bias" else bias
    args = (qkv, pad, bias, case.heads, *case.op_geometry(), 0.5)
    torch.library.opcheck(torch.ops.swin_kernels.window_attention_fwd.default, args)


@pytest.mark.parametrize("case", [AttentionCase(2, 5, 7, 2, 8, 3, 1),
                                  AttentionCase(1, 5, 7, 2, 8, (2, 3), (1, 0), True)], ids=str)
def test_opcheck_attention_backward_bf16(case):
    _, qkv, pad, bias = opcheck_inputs(torch.bfloat16, case)
    out, lse = torch.ops.swin_kernels.window_attention_fwd(qkv, pad, bias, case.heads, *case.op_geometry(), 0.5)
    assert lse.dtype == torch.float32
    args = (torch.randn_like(out), qkv.detach(), pad.detach(), bias.detach(), lse, case.heads, *case.op_geometry(),
            0.5)
    torch.library.opcheck(torch.ops.swin_kernels.window_attention_bwd.default, args)
