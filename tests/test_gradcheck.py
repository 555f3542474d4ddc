"""torch.autograd.gradcheck in fp64 of every op on every backend that can run here."""

import pytest
import torch

import swin_kernels
from swin_kernels import backends

BACKENDS = list(backends.BACKEND_NAMES)


def fast_mode(backend: str) -> bool:
    """Triton runs in its (slow) interpreter here: check random projections of the Jacobian, not every row."""
    return backend == "triton" and not torch.cuda.is_available()


def require(backend: str, op: str, head_dim=None):
    request = backends.Request(op, torch.device("cpu"), torch.float64, 3, head_dim)
    reason = backends.explain(request)[backend]
    if reason is not None:
        pytest.skip(f"{backend} cannot run {op} in fp64 here: {reason}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shift", [0, 1])
def test_attention_gradcheck(backend, shift):
    require(backend, "attention", head_dim=4)
    gen = torch.Generator().manual_seed(shift)
    qkv = torch.randn(2, 5, 4, 24, generator=gen, dtype=torch.float64, requires_grad=True)  # 2 heads, d = 4
    pad = torch.randn(24, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, 9, 9, generator=gen, dtype=torch.float64, requires_grad=True)

    def attention(qkv, pad, bias):
        return swin_kernels.shifted_window_attention(qkv, 2, 3, shift, pad_qkv=pad, bias=bias, scale=0.7,
                                                     backend=backend)

    assert torch.autograd.gradcheck(attention, (qkv, pad, bias), fast_mode=fast_mode(backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_partition_and_reverse_gradcheck(backend):
    require(backend, "partition")
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: swin_kernels.window_partition(t, 3, 1, backend=backend), (x,),
                                    fast_mode=fast_mode(backend))
    windows = torch.randn(2 * 4, 9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: swin_kernels.window_reverse(t, 3, 5, 4, 1, backend=backend), (windows,),
                                    fast_mode=fast_mode(backend))
