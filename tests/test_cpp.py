"""The "cpp" backend (the compiled library's CPU kernels) against the PyTorch reference.

When the extension is not built these tests fail with the load error, unless the build skipped it on purpose
(SWIN_KERNELS_SKIP_EXTENSION=1), in which case they are skipped with that reason.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import swin_kernels
from swin_kernels import FusedWindowAttention
from swin_kernels.backends import BackendUnavailableError
from swin_kernels.ops import _ext, cpp

from backend_checks import (
    ATTENTION_CASES,
    GEOMETRY_CASES,
    PARTITION_CASES,
    VOLUME_CASES,
    VOLUME_PARTITION_CASES,
    AttentionCase,
    attention_inputs,
    check_attention,
    check_bias_grad_deterministic,
    check_partition,
    check_volume_partition,
    partition_case_id,
    run_attention,
    volume_partition_case_id,
)

BACKEND = "cpp"

if _ext.unavailable_reason() is not None and os.environ.get("SWIN_KERNELS_SKIP_EXTENSION") == "1":
    pytest.skip("the C++ extension was not built (SWIN_KERNELS_SKIP_EXTENSION=1)", allow_module_level=True)


@pytest.fixture(autouse=True)
def extension_loaded():
    reason = swin_kernels.backends.unavailable_reason(BACKEND)
    assert reason is None, f"the cpp backend cannot run: {reason}"


# ------------------------------------------------------------------------------------ shared backend checks
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", ATTENTION_CASES + GEOMETRY_CASES, ids=str)
def test_attention_matches_reference(case, dtype):
    check_attention(BACKEND, case, dtype)  # forward + every gradient, outputs poisoned with NaN first
    # bf16 / fp16: tests/test_cpp_low_precision.py, on every instruction-set build


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", PARTITION_CASES, ids=partition_case_id)
def test_partition_and_reverse_are_exact(case, dtype):
    check_partition(BACKEND, *case, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", VOLUME_CASES, ids=str)
def test_volume_attention_matches_reference(case, dtype):
    check_attention(BACKEND, case, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", VOLUME_PARTITION_CASES, ids=volume_partition_case_id)
def test_volume_partition_and_reverse_are_exact(case, dtype):
    check_volume_partition(BACKEND, *case, dtype=dtype)


def test_volume_bias_gradient_is_deterministic():
    check_bias_grad_deterministic(BACKEND, VOLUME_CASES[3])


@pytest.mark.parametrize("isa", cpp.runnable_isas())  # the builds whose flags /proc/cpuinfo lists
def test_every_instruction_set_build_matches_reference(isa, monkeypatch):
    monkeypatch.setenv(cpp.ISA_ENV, isa)
    for case in (ATTENTION_CASES[2], ATTENTION_CASES[4], ATTENTION_CASES[7], VOLUME_CASES[0]):
        check_attention(BACKEND, case, torch.float32)
    check_attention(BACKEND, ATTENTION_CASES[1], torch.float64)


def test_kernel_isa_names_the_build_that_runs(monkeypatch):
    """By default the widest build /proc/cpuinfo allows (the library asks the CPU itself: the two must agree);
    SWIN_KERNELS_CPU_ISA picks another, and only bf16 tells avx512bf16 from avx512."""
    isas = cpp.runnable_isas()
    monkeypatch.delenv(cpp.ISA_ENV, raising=False)
    assert cpp.kernel_isa(torch.bfloat16) == isas[0]
    for isa in isas:
        monkeypatch.setenv(cpp.ISA_ENV, isa)
        assert cpp.kernel_isa(torch.bfloat16) == isa
        for dtype in (torch.float16, torch.float32, torch.float64):
            assert cpp.kernel_isa(dtype) == ("avx512" if isa == "avx512bf16" else isa)
    for name in ("sse9", *(set(cpp.ISA_BUILDS) - set(isas))):
        monkeypatch.setenv(cpp.ISA_ENV, name)
        with pytest.raises(RuntimeError, match=f"SWIN_KERNELS_CPU_ISA={name} is not one of"):
            cpp.kernel_isa()
        with pytest.raises(RuntimeError, match="is not one of"):
            torch.ops.swin_kernels.window_attention_fwd(torch.randn(1, 7, 7, 24), None, None, 2, [7, 7], [0, 0],
                                                        False, 0.5)


def test_softmax_gradient_rows_sum_to_zero_as_in_pytorch():
    """Each row of dS sums to zero (softmax rows sum to one), so grad_bias rows do too: the fp32 kernel must keep that
    as well as PyTorch does. A row-wide rounding factor in the recomputed probabilities would break it."""
    case = AttentionCase(2, 28, 28, 3, 32, 7, 3)
    grad_out = torch.randn(2, 28, 28, 96, generator=torch.Generator().manual_seed(1))
    row_sums = {}
    for backend in (BACKEND, "reference"):
        _, grads = run_attention(backend, case, attention_inputs(case, torch.float32), grad_out)
        row_sums[backend] = grads["bias"].sum(-1).abs().max().item()
        scale = grads["bias"].abs().max().item()
    assert row_sums[BACKEND] <= 4 * row_sums["reference"] + 1e-8 * scale, row_sums


def test_attention_without_pad_vector_or_bias():
    case = AttentionCase(2, 9, 11, 2, 16, 4, 2)
    inputs = attention_inputs(case, torch.float64)
    qkv = inputs["qkv"]
    out = swin_kernels.shifted_window_attention(qkv, case.heads, case.window, case.shift, backend=BACKEND)
    expected = swin_kernels.shifted_window_attention(qkv, case.heads, case.window, case.shift, backend="reference")
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    grad = torch.randn_like(out)
    (ours,) = torch.autograd.grad(out, qkv, grad)
    (theirs,) = torch.autograd.grad(expected, qkv, grad)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None, reason="no C++ compiler to build the test")
def test_index_maps_agree_with_brute_force(tmp_path):
    """The C++ unit test of csrc/index_maps.h (also run by CTest): the maps the CPU and CUDA kernels share."""
    source = Path(__file__).resolve().parent.parent / "csrc" / "tests" / "test_index_maps.cpp"
    binary = tmp_path / "test_index_maps"
    build = subprocess.run([os.environ.get("CXX", "g++"), "-std=c++20", "-O1", str(source), "-o", str(binary)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "agree with brute force" in run.stdout


# ------------------------------------------------------------------------------------------- determinism
MANY_WINDOWS = AttentionCase(3, 56, 49, 3, 32, 7, 3)  # 168 windows: more than the 128 partial-sum chunks


def test_gradients_are_bit_identical_across_runs():
    check_bias_grad_deterministic(BACKEND, MANY_WINDOWS)


def test_gradients_are_bit_identical_across_thread_counts():
    grad_out = torch.randn(3, 56, 49, 96, generator=torch.Generator().manual_seed(5))
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            inputs = attention_inputs(MANY_WINDOWS, torch.float32)
            results.append(run_attention(BACKEND, MANY_WINDOWS, inputs, grad_out))
    finally:
        torch.set_num_threads(threads)
    (out, grads), others = results[0], results[1:]
    for other_out, other_grads in others:
        assert torch.equal(out, other_out)
        for name in grads:
            assert torch.equal(grads[name], other_grads[name]), f"d{name} depends on the thread count"


# ------------------------------------------------------------------------------------ op registration
def opcheck_inputs(dtype=torch.float64):
    case = AttentionCase(2, 5, 7, 2, 8, 3, 1)
    inputs = attention_inputs(case, dtype)
    return case, inputs["qkv"], inputs["pad_qkv"], inputs["bias"]


@pytest.mark.parametrize("optional", ["all", "no_pad", "no_bias"])
def test_opcheck_attention_forward(optional):
    case, qkv, pad, bias = opcheck_inputs()
    pad = None if optional == "no_pad" else pad
    bias = None if optional == "no_bias" else bias
    args = (qkv, pad, bias, case.heads, *case.op_geometry(), 0.5)
    torch.library.opcheck(torch.ops.swin_kernels.window_attention_fwd.default, args)


@pytest.mark.parametrize("case", [AttentionCase(2, 5, 7, 2, 8, 3, 1),
                                  AttentionCase(1, 5, 7, 2, 8, (2, 3), (1, 0), True)], ids=str)
def test_opcheck_attention_backward(case):
    inputs = attention_inputs(case, torch.float64)
    qkv, pad, bias = inputs["qkv"], inputs["pad_qkv"], inputs["bias"]
    out, lse = torch.ops.swin_kernels.window_attention_fwd(qkv, pad, bias, case.heads, *case.op_geometry(), 0.5)
    args = (torch.randn_like(out), qkv.detach(), pad.detach(), bias.detach(), lse, case.heads, *case.op_geometry(),
            0.5)
    torch.library.opcheck(torch.ops.swin_kernels.window_attention_bwd.default, args)


@pytest.mark.parametrize("roll_before_pad", [False, True])
def test_opcheck_partition_and_reverse(roll_before_pad):
    x = torch.randn(2, 5, 7, 3, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.swin_kernels.window_partition.default, (x, [3, 2], [1, 1], roll_before_pad))
    windows = torch.randn(2 * 8, 6, 3, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.swin_kernels.window_reverse.default,
                          (windows, [3, 2], [5, 7], [1, 1], roll_before_pad))
    volume = torch.randn(2, 3, 5, 4, 3, dtype=torch.float64, requires_grad=True)  # (B, D, H, W, C), 2*2*3*2 windows
    torch.library.opcheck(torch.ops.swin_kernels.window_partition.default,
                          (volume, [2, 3, 2], [1, 1, 0], roll_before_pad))
    windows = torch.randn(2 * 12, 12, 3, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.swin_kernels.window_reverse.default,
                          (windows, [2, 3, 2], [3, 5, 4], [1, 1, 0], roll_before_pad))


def test_torch_compile_traces_without_graph_breaks():
    case, qkv, pad, bias = opcheck_inputs(torch.float32)

    def block(qkv, pad, bias):
        out = swin_kernels.shifted_window_attention(qkv, case.heads, case.window, case.shift, pad_qkv=pad, bias=bias,
                                                    backend=BACKEND)
        windows = swin_kernels.window_partition(out, case.window, case.shift, backend=BACKEND)
        return swin_kernels.window_reverse(windows * 2, case.window, case.height, case.width, case.shift,
                                           backend=BACKEND)

    compiled = torch.compile(block, backend="aot_eager", fullgraph=True)
    actual = compiled(qkv, pad, bias)
    expected = block(qkv, pad, bias)
    assert torch.equal(actual, expected)
    grads = torch.autograd.grad(actual.square().sum(), (qkv, pad, bias))
    expected_grads = torch.autograd.grad(expected.square().sum(), (qkv, pad, bias))
    for ours, theirs in zip(grads, expected_grads):
        assert torch.equal(ours, theirs)


def test_direct_op_calls_check_their_arguments():
    qkv = torch.randn(1, 7, 7, 24)
    ops = torch.ops.swin_kernels
    square = ([7, 7], [0, 0], False)
    with pytest.raises(RuntimeError, match="must be contiguous"):
        ops.window_attention_fwd(qkv.transpose(1, 2), None, None, 2, *square, 0.5)
    with pytest.raises(RuntimeError, match="not 3 \\* num_heads \\* head_dim"):
        ops.window_attention_fwd(qkv, None, None, 5, *square, 0.5)
    with pytest.raises(RuntimeError, match="shift must satisfy"):
        ops.window_attention_fwd(qkv, None, None, 2, [7, 7], [0, 7], False, 0.5)
    with pytest.raises(RuntimeError, match="window must be >= 1"):
        ops.window_attention_fwd(qkv, None, None, 2, [0, 7], [0, 0], False, 0.5)
    with pytest.raises(RuntimeError, match="bias must have shape"):
        ops.window_attention_fwd(qkv, None, torch.randn(2, 48, 49), 2, *square, 0.5)
    with pytest.raises(RuntimeError, match="do not tile"):
        ops.window_reverse(torch.randn(3, 49, 4), [7, 7], [14, 7], [0, 0], False)
    with pytest.raises(RuntimeError, match="one entry per spatial axis"):
        ops.window_attention_fwd(qkv, None, None, 2, [7, 7, 7], [0, 0, 0], False, 0.5)
    with pytest.raises(RuntimeError, match="one entry per spatial axis"):
        ops.window_attention_fwd(qkv.reshape(1, 1, 7, 7, 24), None, None, 2, *square, 0.5)


# ------------------------------------------------------------------------------------------ backend level
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_fused_window_attention_end_to_end(dtype):
    torch.manual_seed(0)
    reference = FusedWindowAttention(32, 2, window_size=7, shift_size=3, backend="reference").to(dtype)
    fused = FusedWindowAttention(32, 2, window_size=7, shift_size=3, backend=BACKEND).to(dtype)
    fused.load_state_dict(reference.state_dict())
    x = torch.randn(2, 15, 17, 32, dtype=dtype)  # padded on both sides, H != W
    grad = torch.randn(2, 15, 17, 32, dtype=dtype)
    rtol = 1e-10 if dtype == torch.float64 else 1e-5
    outputs = {}
    for name, module in (("reference", reference), ("fused", fused)):
        xi = x.clone().requires_grad_()
        out = module(xi)
        out.backward(grad)
        outputs[name] = [out, xi.grad] + [p.grad for p in module.parameters()]
    for ours, theirs in zip(outputs["fused"], outputs["reference"]):
        scale = theirs.abs().max().item()
        assert (ours - theirs).abs().max().item() <= rtol * scale


def test_unsupported_calls_say_why():
    x = torch.randn(1, 7, 7, 24).to(torch.float8_e4m3fn)
    with pytest.raises(BackendUnavailableError, match="cpp: .*float32, float64, bfloat16 and float16"):
        swin_kernels.shifted_window_attention(x, 2, 7, backend=BACKEND)
    with pytest.raises(BackendUnavailableError, match="cpp: .*dropout"):
        swin_kernels.shifted_window_attention(x.bfloat16(), 2, 7, dropout_p=0.1, backend=BACKEND)


def test_missing_extension_is_reported_and_the_package_still_works():
    script = """
import torch, swin_kernels
from swin_kernels.backends import BackendUnavailableError
x = torch.randn(1, 7, 7, 24)
out = swin_kernels.shifted_window_attention(x, 2, 7)  # "auto" falls back to the reference
assert out.shape == (1, 7, 7, 8)
try:
    swin_kernels.shifted_window_attention(x, 2, 7, backend="cpp")
except BackendUnavailableError as error:
    print(error)
else:
    raise SystemExit("cpp ran without its extension")
"""
    env = dict(os.environ, SWIN_KERNELS_DISABLE_EXTENSION="1")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "cpp: " in result.stdout and "swin_kernels._C" in result.stdout and "pip install" in result.stdout
