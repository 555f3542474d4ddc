"""torch.autograd.gradcheck in fp64 of every op on every backend that can run here."""

import pytest
import torch

import swin_kernels
from swin_kernels import backends

from swin_family_models import backend_device

BACKENDS = list(backends.BACKEND_NAMES)


def fast_mode(backend: str) -> bool:
    """Triton runs in its (slow) interpreter here: check random projections of the Jacobian, not every row."""
    return backend == "triton" and not torch.cuda.is_available()


def require(backend: str, op: str, head_dim=None) -> torch.device:
    """The device the backend runs on, or skip with the dispatcher's reason why it cannot run fp64 there."""
    device = backend_device(backend)
    request = backends.Request(op, device, torch.float64, (3, 3), head_dim)
    reason = backends.reasons(request)[backend]
    if reason is not None:
        pytest.skip(f"{backend} cannot run {op} in fp64 here: {reason}")
    return device


# (sizes, window, shift, roll_before_pad) of maps (H, W): unshifted, shifted, and a rectangular window rolled before
# padding; of volumes (D, H, W): padded and shifted on every axis, in both orders of pad and roll.
MAPS = [((5, 4), 3, 0, False), ((5, 4), 3, 1, False), ((5, 4), (2, 3), (1, 2), True)]
VOLUMES = [((3, 3, 4), (2, 2, 3), (1, 1, 2), False), ((3, 3, 4), (2, 3, 2), (1, 0, 1), True)]


def _tokens(sizes, window) -> int:
    n = 1
    for m in (window,) * len(sizes) if isinstance(window, int) else window:
        n *= m
    return n


def _depth(sizes) -> dict:
    return {"depth": sizes[0]} if len(sizes) == 3 else {}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sizes, window, shift, roll_before_pad", MAPS + VOLUMES)
def test_attention_gradcheck(backend, sizes, window, shift, roll_before_pad):
    device = require(backend, "attention", head_dim=4)
    gen = torch.Generator().manual_seed(1)
    n = _tokens(sizes, window)
    batch = 2 if len(sizes) == 2 else 1
    qkv = torch.randn(batch, *sizes, 24, generator=gen, dtype=torch.float64).to(device).requires_grad_()  # 2 heads
    pad = torch.randn(24, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    bias = torch.randn(2, n, n, generator=gen, dtype=torch.float64).to(device).requires_grad_()

    def attention(qkv, pad, bias):
        return swin_kernels.shifted_window_attention(qkv, 2, window, shift, roll_before_pad=roll_before_pad,
                                                     pad_qkv=pad, bias=bias, scale=0.7, backend=backend)

    assert torch.autograd.gradcheck(attention, (qkv, pad, bias), fast_mode=fast_mode(backend))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sizes, window, shift, roll_before_pad", MAPS[1:] + VOLUMES)
def test_partition_and_reverse_gradcheck(backend, sizes, window, shift, roll_before_pad):
    device = require(backend, "partition")
    x = torch.randn(2, *sizes, 3, dtype=torch.float64, device=device, requires_grad=True)
    options = dict(backend=backend, roll_before_pad=roll_before_pad)
    windows = swin_kernels.window_partition(x, window, shift, **options)
    assert torch.autograd.gradcheck(lambda t: swin_kernels.window_partition(t, window, shift, **options), (x,),
                                    fast_mode=fast_mode(backend))
    windows = torch.randn(windows.shape, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: swin_kernels.window_reverse(t, window, *sizes[-2:], shift, **_depth(sizes), **options),
        (windows,), fast_mode=fast_mode(backend))
