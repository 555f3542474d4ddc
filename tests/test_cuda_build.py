"""The "cuda" backend: what can be checked without a GPU (why it cannot run, its limits, the resource checker, the
build tooling, the cost model's CUDA side), and the shared backend checks that run when a CUDA device and a CUDA
build of the extension are here."""

import inspect
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import swin_kernels
from swin_kernels import backends
from tools import cuda_check
from tools.cost_model import budgets, cuda_kernels, sass
from swin_kernels.backends import BackendUnavailableError
from swin_kernels.ops import cuda as cuda_backend

from backend_checks import (
    ATTENTION_CASES,
    AttentionCase,
    GEOMETRY_CASES,
    PARTITION_CASES,
    VOLUME_CASES,
    VOLUME_PARTITION_CASES,
    check_attention,
    check_bias_grad_deterministic,
    check_partition,
    check_volume_partition,
    partition_case_id,
    volume_partition_case_id,
)

BACKEND = "cuda"


def test_cuda_backend_says_why_it_cannot_run_here():
    reason = backends.unavailable_reason(BACKEND)
    if reason is None:
        pytest.skip("the cuda backend can run on this machine")
    assert any(words in reason for words in ("no CUDA kernels", "no CUDA device", "swin_kernels._C"))
    with pytest.raises(BackendUnavailableError, match=f"^{BACKEND}: .+"):
        swin_kernels.shifted_window_attention(torch.randn(1, 7, 7, 24), 2, 7, backend=BACKEND)


def require_limits() -> cuda_backend.Limits:
    known = cuda_backend.limits()
    if known is None:
        pytest.skip("the loaded extension does not export swin_kernels::cuda_limits (not built, built without the "
                    "CUDA kernels, or from older sources)")
    return known


def limits_from_sources(tmp_path) -> dict:
    code, error, limits = cuda_check.kernel_limits(tmp_path)
    assert code == 0, error
    return limits


def attention_request(dtype=torch.float16, window=(7, 7), head_dim=32, device="cuda"):
    return backends.Request("attention", torch.device(device), dtype, window, head_dim)


def test_cuda_limits_are_the_ops_and_the_ops_are_the_sources(tmp_path):
    known = require_limits()
    text = torch.ops.swin_kernels.cuda_limits()
    assert cuda_backend.Limits.from_json(text) == known
    assert json.loads(text) == limits_from_sources(tmp_path), (
        "the extension reports other limits than csrc/cuda/kernel_limits.h: rebuild it")


def test_cuda_backend_names_its_limits():
    known = require_limits()
    reason = cuda_backend.unsupported_reason
    assert f"up to {known.max_tokens} tokens" in reason(attention_request(window=(12, 12)))
    assert f"up to {known.max_tokens} tokens" in reason(attention_request(window=(5, 13)))
    assert reason(attention_request(window=(4, 16))) is None  # 64 tokens, rectangular
    assert f"multiple of {known.head_dim_multiple}" in reason(attention_request(head_dim=24))
    assert "float64" in reason(attention_request(dtype=torch.float64))
    assert "CUDA tensors" in reason(attention_request(device="cpu"))


def test_cuda_backend_takes_3d_windows_within_its_token_limit():
    known = require_limits()
    reason = cuda_backend.unsupported_reason
    assert reason(attention_request(window=(1, 1, known.max_tokens))) is None
    assert reason(attention_request(window=(2, 4, 4))) is None  # 32 tokens, a Video Swin-like window
    too_many = attention_request(window=(2, 7, 7))
    assert f"got 2x7x7 ({too_many.tokens} tokens)" in reason(too_many)


def test_unsupported_reason_follows_the_ops_numbers(monkeypatch):
    """Every boundary of the cuda backend is the op's: tokens, head_dim, and shared memory against a GPU's opt-in
    limit (the GPU's properties stubbed: there is none here)."""
    known = require_limits()
    reason = cuda_backend.unsupported_reason
    assert reason(attention_request(window=(1, known.max_tokens))) is None
    assert reason(attention_request(window=(1, known.max_tokens + 1))) is not None
    for head_dim in range(1, known.max_head_dim + 2 * known.head_dim_multiple):
        runs = head_dim % known.head_dim_multiple == 0 and head_dim <= known.max_head_dim
        assert (reason(attention_request(head_dim=head_dim)) is None) == runs, head_dim
    allowed = {}
    monkeypatch.setattr(cuda_backend, "_smem_optin", lambda device, limits: allowed["bytes"])
    for dtype in (torch.float32, torch.float16):
        element_bytes = torch.finfo(dtype).bits // 8
        for head_dim in range(known.head_dim_multiple, known.max_head_dim + 1, known.head_dim_multiple):
            needed = max(known.attention_smem[(p, element_bytes, head_dim)] for p in ("forward", "backward"))
            allowed["bytes"] = needed
            assert reason(attention_request(dtype, head_dim=head_dim)) is None
            allowed["bytes"] = needed - 1
            why = reason(attention_request(dtype, head_dim=head_dim))
            assert (why is None) == (needed <= known.smem_everywhere), (dtype, head_dim, why)
            if why is not None:
                assert f"need {needed} bytes" in why and f"allows {needed - 1}" in why


def test_unsupported_reason_follows_other_limits(monkeypatch):
    """Limits of some other build (made up here) move every answer with them: nothing in ops/cuda.py is a copy."""
    made_up = cuda_backend.Limits(
        max_tokens=100, head_dim_multiple=8, max_head_dim=128, bf16_min_capability=(8, 0),
        attention_smem={(p, b, d): 1000 * d for p in ("forward", "backward") for b in (2, 4) for d in range(8, 129, 8)},
        smem_optin={(8, 0): 64_000}, smem_optin_other=50_000)
    monkeypatch.setattr(cuda_backend, "limits", lambda: made_up)
    monkeypatch.setattr(cuda_backend, "_smem_optin", lambda device, limits: 64_000)
    reason = cuda_backend.unsupported_reason
    assert reason(attention_request(window=(10, 10), head_dim=24)) is None  # Donut's window, CLAP's head_dim
    assert "up to 100 tokens" in reason(attention_request(window=(11, 10)))
    assert "multiple of 8 up to 128" in reason(attention_request(head_dim=20))
    assert reason(attention_request(head_dim=48)) is None  # 48000 bytes fit everywhere
    assert "need 72000 bytes" in reason(attention_request(head_dim=72))  # this GPU allows 64000


def test_ops_cuda_keeps_no_copy_of_a_cpp_limit(tmp_path):
    """ops/cuda.py holds none of the shared-memory numbers of csrc/cuda/kernel_limits.h, nor the names it once kept
    limits under (that the token and head_dim limits are the op's, test_unsupported_reason_follows_other_limits
    shows: 64 is also an ELF header's size)."""
    source = inspect.getsource(cuda_backend)
    for name in ("MAX_TOKENS", "MAX_HEAD_DIM", "FP32_WIDE_HEAD_SMEM", "_SMEM_OPTIN_BY_CAPABILITY"):
        assert name not in source
    assert not re.search(r"\d\s*\*\s*1024", source)
    limits = limits_from_sources(tmp_path)
    numbers = {int(n) for n in re.findall(r"(?<![\w.])\d[\d_]*", source)}
    copied = numbers & ({r["bytes"] for r in limits["attention_smem"] + limits["smem_optin"]}
                        | {limits["smem_optin_other"]})
    assert not copied, f"ops/cuda.py holds numbers of kernel_limits.h: {sorted(copied)}"


PTXAS_SAMPLE = """\
ptxas info    : Compiling entry function '_Z6kernelPf' for 'sm_90'
ptxas info    : Function properties for _Z6kernelPf
    24 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 255 registers, used 1 barriers, 4096 bytes smem, 388 bytes cmem[0]
ptxas info    : Compiling entry function '_Z5otherv' for 'sm_80'
ptxas info    : Function properties for _Z5otherv
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 40 registers, used 0 barriers, 352 bytes cmem[0]
"""


def test_ptxas_report_is_parsed():
    first, second = cuda_check.parse_ptxas(PTXAS_SAMPLE)
    assert (first.name, first.arch, first.registers, first.static_smem) == ("_Z6kernelPf", "90", 255, 4096)
    assert (first.stack, first.spill_stores, first.spill_loads) == (24, 8, 12)
    assert (second.arch, second.registers, second.spill_stores, second.static_smem) == ("80", 40, 0, 0)


@pytest.mark.skipif(cuda_check.find_nvcc() is None, reason="nvcc is not installed")
def test_a_cuda_file_compiles_and_reports_its_kernels(tmp_path):
    code, output = cuda_check.compile_kernels(cuda_check.find_nvcc(), cuda_check.CSRC / "cuda" / "partition.cu", "80",
                                              tmp_path)
    assert code == 0, output
    kernels = cuda_check.parse_ptxas(output)
    assert kernels and all(k.arch == "80" and k.registers > 0 and not k.spill_stores for k in kernels)
    assert any("move_rows_kernel" in cuda_check.readable_name(k.name) for k in kernels)


def test_shared_memory_layouts_fit_sm80(tmp_path):
    limits = limits_from_sources(tmp_path)
    head_dims = limits["max_head_dim"] // limits["head_dim_multiple"]
    # forward/backward x 16/32-bit x head_dim, and the flash forward/backward (16-bit) x head_dim
    assert len(limits["attention_smem"]) == 2 * 2 * head_dims + 2 * head_dims
    for row in limits["attention_smem"]:
        assert 0 < row["bytes"] <= cuda_check.smem_optin_limit(limits, "80"), row


# --------------------------------------------------- the static cost model of the CUDA kernels (tools/cost_model)
CUDA_SOURCE = """\
constexpr int kThreads = 128, kRows = 64;

template <int K>
__device__ __forceinline__ float dot(const float* a, int n) {
  float s = 0.0f;
  for (int k = 0; k < K * n; ++k)  // trips: K * n
    s += a[k];
  return s;
}

__global__ void kernel(const Args args, const bool vector) {
  // trips: args.chunks, unrolled 4
  for (int64_t c = 0; c < args.chunks; ++c) {
    float x = dot<3>(args.a, args.n);
#pragma unroll
    for (int r = 0; r < kRows / kThreads; ++r) x += 1.0f;
  }
}
"""


def _listing(frames_per_instruction):
    """A SASS listing whose instructions carry the given source frames (innermost first), and branch targets."""
    lines = []
    for index, (opcode, frames, target) in enumerate(frames_per_instruction):
        if target == "label":
            lines.append(f".L_x_{index}:")
        for level, (file, line) in enumerate(frames):
            outer = (f' inlined at "/k/{frames[level + 1][0]}", line {frames[level + 1][1]}'
                     if level + 1 < len(frames) else "")
            lines.append(f'\t//## File "/k/{file}", line {line}{outer}')
        operands = f" `(.L_x_{target})" if isinstance(target, int) else " R0"
        lines.append(f"        /*{index * 16:04x}*/                   {opcode}{operands} ;")
    return "\n".join(lines)


def test_cuda_loops_take_annotated_trip_counts_through_inlined_helpers(tmp_path):
    csrc = tmp_path / "csrc"
    (csrc / "cuda").mkdir(parents=True)
    (csrc / "cuda" / "k.cu").write_text(CUDA_SOURCE)
    (csrc / "index_maps.h").write_text("")
    sources = cuda_kernels.Sources(tmp_path)
    k = sources.files["k.cu"]
    chunk_loop, dot_loop = next(l for l in k.loops if l.line == 13), next(l for l in k.loops if l.line == 6)
    assert (chunk_loop.trips, chunk_loop.unrolled, chunk_loop.end) == ("args.chunks", 4, 17)
    assert (dot_loop.trips, dot_loop.end, dot_loop.function.name) == ("K * n", 7, "dot")
    assert dot_loop.function.params == ["a", "n"] and dot_loop.function.template_params == ["K"]
    assert sources.constants["kRows"] == 64
    helper = [("k.cu", 7), ("k.cu", 14)]  # dot's body, inlined at the call in the chunk loop
    listing = _listing([
        ("S2R", [("k.cu", 11)], None),
        ("IADD3", [("k.cu", 13)], "label"),           # 1: the unrolled chunk loop starts
        ("FADD", helper, "label"),                    # 2: dot's loop
        ("BRA", [("k.cu", 6), ("k.cu", 14)], 2),      # 3
        ("BRA", [("k.cu", 13)], 1),                   # 4
        ("IADD3", [("k.cu", 13)], "label"),           # 5: the remainder copy
        ("BRA", [("k.cu", 13)], 5),                   # 6
        ("EXIT", [("k.cu", 18)], None),
        ("BRA", [("k.cu", 18)], "label"),             # 8: cold code after EXIT: no loop
        ("BRA", [("k.cu", 18)], 4),
    ])
    kernel = cuda_kernels.kernel_of({"listing": listing, "kernel": "kernel", "file": "k.cu", "registers": 32,
                                     "shared_static": 0})
    assert kernel.main_end == 7
    args = SimpleNamespace(chunks=10, n=5, a=None)
    notes = cuda_kernels.assign_trips(kernel, sources, {"args": args, "vector": True})
    loops = {(l.start, l.end): l.trips for l in sass.walk(kernel.loops)}
    assert loops == {(1, 4): 10 // 4, (2, 3): 3 * 5, (5, 6): 10 % 4}
    assert any(note.endswith("K * n = 15") for note in notes)
    count, _ = cuda_kernels.dynamic_counts(kernel)
    assert count == 1 + 2 * (1 + 2 * 15 + 1) + 2 * 2 + 1  # S2R, chunk loop x2 (dot loop x15 inside), remainder, EXIT


def test_a_cuda_loop_without_a_trip_count_fails_the_model(tmp_path):
    csrc = tmp_path / "csrc"
    (csrc / "cuda").mkdir(parents=True)
    (csrc / "cuda" / "k.cu").write_text(CUDA_SOURCE.replace("  // trips: K * n", ""))
    (csrc / "index_maps.h").write_text("")
    listing = _listing([("FADD", [("k.cu", 7), ("k.cu", 14)], "label"), ("BRA", [("k.cu", 6), ("k.cu", 14)], 0),
                        ("EXIT", [("k.cu", 18)], None)])
    kernel = cuda_kernels.kernel_of({"listing": listing, "kernel": "kernel", "file": "k.cu", "registers": 32,
                                     "shared_static": 0})
    with pytest.raises(ValueError, match=r"k.cu:6 compiles to a loop .* trips"):
        cuda_kernels.assign_trips(kernel, cuda_kernels.Sources(tmp_path), {"args": SimpleNamespace(chunks=1, n=1)})


def test_cuda_budgets_cover_static_and_per_workload_counts(tmp_path):
    path = tmp_path / "budgets.json"
    path.write_text(json.dumps({"triton_kernel [A=1] sm_90 @ w": {"instructions": 5, "registers": 5},
                                "cuda gone<float> (k.cu) sm_90 static": {"instructions": 1, "registers": 1}}))
    cuda = {"static": [{"kernel": "k<float, 32>", "file": "k.cu", "static_instructions": 100, "registers": 40}],
            "workloads": [{"workload": "w", "parts": {"backward": {"kernels": [
                {"kernel": "r<float>", "instructions": 7, "registers": 20},
                {"kernel": "r<float>", "instructions": 9, "registers": 20}]}}},
                          {"workload": "big window", "unsupported": "window of 144 tokens > 64"}]}
    budgets.write(path, [], 90, cuda)
    data = json.loads(path.read_text())
    assert "triton_kernel [A=1] sm_90 @ w" in data  # other entries stay
    assert "cuda gone<float> (k.cu) sm_90 static" not in data  # a kernel that no longer exists
    assert data["cuda k<float, 32> (k.cu) sm_90 static"] == {"instructions": 100, "registers": 40}
    assert data["cuda r<float> sm_90 @ w"] == {"instructions": 9, "registers": 20}
    assert budgets.check(path, [], 90, cuda) == []
    cuda["workloads"][0]["parts"]["backward"]["kernels"][0]["instructions"] = 10
    assert budgets.check(path, [], 90, cuda) == ["cuda r<float> sm_90 @ w: 10 instructions, budget 9"]


# ------------------------------------------------------------- the flash kernel's index arithmetic, on the host
@pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None, reason="no C++ compiler to build the test")
def test_flash_kernel_layout_simulated_on_the_host(tmp_path):
    """csrc/tests/test_mma_layout.cpp (also run by CTest): the fragment ownership, ldmatrix addresses, padding,
    output staging and 64-bit offsets of attention_flash_forward.cu, with a warp's 32 lanes simulated from the PTX
    definitions and one window's forward checked against softmax attention."""
    source = Path(__file__).resolve().parent.parent / "csrc" / "tests" / "test_mma_layout.cpp"
    binary = tmp_path / "test_mma_layout"
    build = subprocess.run([os.environ.get("CXX", "g++"), "-std=c++20", "-O1", "-Wall", "-Wextra", "-Werror",
                            str(source), "-o", str(binary)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(binary)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "all checks passed" in run.stdout


@pytest.mark.skipif(cuda_check.find_nvcc() is None, reason="nvcc is not installed")
def test_flash_kernels_issue_each_fragment_once():
    """The compiled flash kernels (sm_90, the cost model's cached listings) hold exactly the tensor-core and ldmatrix
    instructions their tiles need: nothing loaded or multiplied twice, nothing left out by the unrolling."""
    static = {r["kernel"]: r for r in cuda_kernels.analyse(90, chosen=())["static"]}
    tile = 64
    for dtype in ("__half", "__nv_bfloat16"):
        for d in (16, 32, 48, 64):
            forward = static[f"attention_flash_forward_kernel<{dtype}, {d}>"]["tensor_core"]
            # S = q k^T: (tile / 8) n-tiles x (d / 16) k-steps; O = P v: (d / 8) n-tiles x (tile / 16) k-steps
            assert forward.get("HMMA") == tile // 8 * (d // 16) + d // 8 * (tile // 16), (dtype, d, forward)
            backward = static[f"attention_flash_backward_kernel<{dtype}, {d}>"]["tensor_core"]
            # S and dP, then dQ, dK and dV
            assert backward.get("HMMA") == 2 * (tile // 8) * (d // 16) + 3 * (d // 8) * (tile // 16), (dtype, d)
    records = {cuda_kernels.readable(r["kernel"]): r for r in cuda_kernels.compile_listings(90)}
    for dtype in ("__half", "__nv_bfloat16"):
        for d in (16, 32, 48, 64):
            listing = records[f"attention_flash_forward_kernel<{dtype}, {d}>"]["listing"]
            # q: d / 16 x4 loads, k and v (.trans): (tile / 16) x (d / 16) x4 loads each
            assert len(re.findall(r"\bLDSM\.16\.M88\.4\b", listing)) == d // 16 + tile // 16 * (d // 16), (dtype, d)
            assert len(re.findall(r"\bLDSM\.16\.MT88\.4\b", listing)) == tile // 16 * (d // 16), (dtype, d)
            assert not re.search(r"\b(LDL|STL)\b", listing), (dtype, d)


def test_flash_kernels_are_selected_explicitly_and_reported():
    """The flash kernels are opt-in (SWIN_KERNELS_CUDA_KERNELS=flash) until a GPU has run them; their shared memory
    is in the limits the op reports, so cuda_check and the cost model see it."""
    root = Path(__file__).resolve().parent.parent / "csrc" / "cuda"
    limits_header = (root / "kernel_limits.h").read_text()
    assert 'std::strcmp(setting, "flash") == 0' in limits_header
    assert "setting == nullptr || setting[0] == '\\0'" in limits_header  # unset: the verified kernels
    ops = (root / "ops_cuda.cpp").read_text()
    assert "variant == KernelVariant::kFlash" in ops and "launch_attention_flash_forward" in ops
    assert "launch_attention_flash_backward" in ops
    with __import__("tempfile").TemporaryDirectory() as tmp:
        code, error, limits = cuda_check.kernel_limits(Path(tmp))
    assert code == 0, error
    flash = [r for r in limits["attention_smem"] if r["pass"] == "flash_forward"]
    head_dims = set(range(limits["head_dim_multiple"], limits["max_head_dim"] + 1, limits["head_dim_multiple"]))
    assert {r["head_dim"] for r in flash} == head_dims
    assert {r["head_dim"] for r in limits["attention_smem"] if r["pass"] == "flash_backward"} == head_dims
    verified = {(r["element_bytes"], r["head_dim"]): r["bytes"] for r in limits["attention_smem"]
                if r["pass"] == "forward"}
    assert all(r["bytes"] <= verified[(2, r["head_dim"])] for r in flash)  # never needs more than the verified one


# ------------------------------------------------------------------------------ on a GPU: the shared checks
def require_cuda_backend():
    reason = backends.unavailable_reason(BACKEND)
    if reason is not None:
        pytest.skip(f"the cuda backend cannot run here: {reason}")


def _within_limits(case) -> bool:
    known = cuda_backend.limits()  # None without the extension: every case, each skipped without a GPU anyway
    return known is None or (case.tokens <= known.max_tokens and known.head_dim_supported(case.head_dim))


CUDA_CASES = [case for case in ATTENTION_CASES + GEOMETRY_CASES + VOLUME_CASES if _within_limits(case)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CUDA_CASES, ids=str)
def test_cuda_attention_matches_reference(case, dtype):
    require_cuda_backend()
    check_attention(BACKEND, case, dtype, device="cuda")


@pytest.mark.parametrize("case", PARTITION_CASES, ids=partition_case_id)
def test_cuda_partition_and_reverse_are_exact(case):
    require_cuda_backend()
    check_partition(BACKEND, *case, device="cuda")


@pytest.mark.parametrize("case", VOLUME_PARTITION_CASES, ids=volume_partition_case_id)
def test_cuda_volume_partition_and_reverse_are_exact(case):
    require_cuda_backend()
    check_volume_partition(BACKEND, *case, device="cuda")


@pytest.fixture
def flash_kernels(monkeypatch):
    """The flash-style CUDA forward (attention_flash_forward.cu) for the calls of one test: read by the op per call."""
    monkeypatch.setenv("SWIN_KERNELS_CUDA_KERNELS", "flash")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CUDA_CASES, ids=str)
def test_cuda_flash_attention_matches_reference(case, dtype, flash_kernels):
    require_cuda_backend()
    check_attention(BACKEND, case, dtype, device="cuda")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CUDA_CASES, ids=str)
def test_cuda_flash_forward_agrees_with_the_verified_kernel(case, dtype, monkeypatch):
    """Both forwards on the same inputs: outputs within the element type's rounding, lse within fp32 rounding."""
    require_cuda_backend()
    from backend_checks import attention_inputs

    inputs = {name: t.detach() for name, t in attention_inputs(case, dtype, "cuda").items()}
    args = (inputs["qkv"], inputs["pad_qkv"], inputs["bias"], case.heads, *case.op_geometry(), case.head_dim ** -0.5)
    monkeypatch.setenv("SWIN_KERNELS_CUDA_KERNELS", "verified")
    out_v, lse_v = torch.ops.swin_kernels.window_attention_fwd(*args)
    monkeypatch.setenv("SWIN_KERNELS_CUDA_KERNELS", "flash")
    out_f, lse_f = torch.ops.swin_kernels.window_attention_fwd(*args)
    # the verified kernel rounds q * scale to the element type, the flash one scales S in fp32: a rounding apart
    tolerance = 6e-2 if dtype == torch.bfloat16 else 1e-2
    torch.testing.assert_close(out_f.float(), out_v.float(), rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(lse_f, lse_v, rtol=1e-2, atol=tolerance)


def test_cuda_flash_setting_is_checked(monkeypatch):
    require_cuda_backend()
    monkeypatch.setenv("SWIN_KERNELS_CUDA_KERNELS", "fast")
    qkv = torch.randn(1, 7, 7, 96, device="cuda", dtype=torch.float16)
    with pytest.raises(RuntimeError, match="SWIN_KERNELS_CUDA_KERNELS"):
        torch.ops.swin_kernels.window_attention_fwd(qkv, None, None, 2, [7, 7], [0, 0], False, 0.25)


# Maps without padding tokens: the flash backward runs (with padding the verified backward does)
FLASH_BACKWARD_CASES = [AttentionCase(3, 14, 14, 3, 32, 7, 3), AttentionCase(2, 16, 24, 2, 16, (8, 4), (4, 2)),
                        AttentionCase(1, 8, 8, 2, 64, 8, 0, roll_before_pad=True),
                        AttentionCase(2, 8, 8, 2, 48, (2, 4, 4), (1, 2, 2), depth=4)]


def test_cuda_flash_gradients_are_deterministic(flash_kernels):
    require_cuda_backend()
    check_bias_grad_deterministic(BACKEND, CUDA_CASES[1], device="cuda")
    check_bias_grad_deterministic(BACKEND, FLASH_BACKWARD_CASES[0], device="cuda")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", FLASH_BACKWARD_CASES, ids=str)
def test_cuda_flash_backward_matches_reference(case, dtype, flash_kernels):
    require_cuda_backend()
    check_attention(BACKEND, case, dtype, device="cuda")


@pytest.mark.parametrize("case", FLASH_BACKWARD_CASES, ids=str)
def test_cuda_flash_backward_agrees_with_the_verified_kernel(case, monkeypatch):
    """Both backwards on the same inputs and lse: gradients within bf16 rounding; grad_pad_qkv zero (no padding)."""
    require_cuda_backend()
    from backend_checks import attention_inputs

    inputs = {name: t.detach() for name, t in attention_inputs(case, torch.bfloat16, "cuda").items()}
    geometry = (case.heads, *case.op_geometry(), case.head_dim ** -0.5)
    ops = torch.ops.swin_kernels
    out, lse = ops.window_attention_fwd(inputs["qkv"], inputs["pad_qkv"], inputs["bias"], *geometry)
    grad = torch.randn_like(out)
    monkeypatch.setenv("SWIN_KERNELS_CUDA_KERNELS", "verified")
    verified = ops.window_attention_bwd(grad, inputs["qkv"], inputs["pad_qkv"], inputs["bias"], lse, *geometry)
    monkeypatch.setenv("SWIN_KERNELS_CUDA_KERNELS", "flash")
    flash = ops.window_attention_bwd(grad, inputs["qkv"], inputs["pad_qkv"], inputs["bias"], lse, *geometry)
    for name, a, b in zip(("grad_qkv", "grad_pad", "grad_bias"), flash, verified):
        scale = b.float().abs().max().clamp_min(1e-3)
        assert ((a.float() - b.float()).abs().max() / scale) < 5e-2, name
    assert not flash[1].any()


def test_cuda_gradients_are_deterministic():
    require_cuda_backend()
    check_bias_grad_deterministic(BACKEND, CUDA_CASES[1], device="cuda")


def test_cuda_opcheck():
    require_cuda_backend()
    gen = torch.Generator().manual_seed(0)
    qkv = torch.randn(2, 5, 7, 96, generator=gen).cuda().requires_grad_()  # 2 heads of 16
    pad = torch.randn(96, generator=gen).cuda().requires_grad_()
    bias = torch.randn(2, 9, 9, generator=gen).cuda().requires_grad_()
    ops = torch.ops.swin_kernels
    geometry = ([3, 3], [1, 1], False)
    torch.library.opcheck(ops.window_attention_fwd.default, (qkv, pad, bias, 2, *geometry, 0.25))
    out, lse = ops.window_attention_fwd(qkv, pad, bias, 2, *geometry, 0.25)
    torch.library.opcheck(ops.window_attention_bwd.default,
                          (torch.randn_like(out), qkv.detach(), pad.detach(), bias.detach(), lse, 2, *geometry, 0.25))
    x = torch.randn(2, 5, 7, 3, device="cuda", requires_grad=True)
    torch.library.opcheck(ops.window_partition.default, (x, [3, 3], [1, 1], False))
    windows = ops.window_partition(x, [3, 3], [1, 1], False).detach().requires_grad_()
    torch.library.opcheck(ops.window_reverse.default, (windows, [3, 3], [5, 7], [1, 1], False))
