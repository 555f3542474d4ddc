"""The "cuda" backend: what can be checked without a GPU (why it cannot run, the resource checker, the build
tooling), and the shared backend checks that run when a CUDA device and a CUDA build of the extension are here."""

import pytest
import torch

import swin_kernels
from swin_kernels import backends
from tools import cuda_check
from swin_kernels.backends import BackendUnavailableError
from swin_kernels.ops import cuda as cuda_backend

from backend_checks import (
    ATTENTION_CASES,
    GEOMETRY_CASES,
    PARTITION_CASES,
    check_attention,
    check_bias_grad_deterministic,
    check_partition,
    partition_case_id,
)

BACKEND = "cuda"


def test_cuda_backend_says_why_it_cannot_run_here():
    reason = backends.unavailable_reason(BACKEND)
    if reason is None:
        pytest.skip("the cuda backend can run on this machine")
    assert any(words in reason for words in ("no CUDA kernels", "no CUDA device", "swin_kernels._C"))
    with pytest.raises(BackendUnavailableError, match=f"^{BACKEND}: .+"):
        swin_kernels.shifted_window_attention(torch.randn(1, 7, 7, 24), 2, 7, backend=BACKEND)


def test_cuda_backend_names_its_limits():
    def request(dtype=torch.float32, window=(7, 7), head_dim=32, device="cuda"):
        return backends.Request("attention", torch.device(device), dtype, window, head_dim)

    assert "up to 64 tokens" in cuda_backend.unsupported_reason(request(window=(12, 12)))
    assert "up to 64 tokens" in cuda_backend.unsupported_reason(request(window=(5, 13)))
    assert cuda_backend.unsupported_reason(request(window=(4, 16))) is None  # 64 tokens, rectangular
    assert "multiple of 16" in cuda_backend.unsupported_reason(request(head_dim=24))
    assert "float64" in cuda_backend.unsupported_reason(request(dtype=torch.float64))
    assert "CUDA tensors" in cuda_backend.unsupported_reason(request(device="cpu"))


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
    code, error, rows = cuda_check.dynamic_smem(tmp_path)
    assert code == 0, error
    assert len(rows) == 16
    for kernel, dtype, head_dim, size in rows:
        assert 0 < size <= cuda_check.SMEM_OPTIN_LIMIT["80"], (kernel, dtype, head_dim, size)


# ------------------------------------------------------------------------------ on a GPU: the shared checks
def require_cuda_backend():
    reason = backends.unavailable_reason(BACKEND)
    if reason is not None:
        pytest.skip(f"the cuda backend cannot run here: {reason}")


CUDA_CASES = [case for case in ATTENTION_CASES + GEOMETRY_CASES
              if case.tokens <= cuda_backend.MAX_TOKENS and case.head_dim % 16 == 0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CUDA_CASES, ids=str)
def test_cuda_attention_matches_reference(case, dtype):
    require_cuda_backend()
    check_attention(BACKEND, case, dtype, device="cuda")


@pytest.mark.parametrize("case", PARTITION_CASES, ids=partition_case_id)
def test_cuda_partition_and_reverse_are_exact(case):
    require_cuda_backend()
    check_partition(BACKEND, *case, device="cuda")


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
