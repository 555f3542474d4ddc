"""Property-based tests of the window geometry: random maps, rectangular windows, per-axis shifts, both orders.

(a) the reference's partition and reverse against a construction from scratch (torch.roll and F.pad in the
    order the geometry names, then view/permute); (b) the cpp backend's fused attention, forward and every
    gradient, against the reference in fp64; (c) partition then reverse is the identity on every backend that
    runs here (triton, emulated here, is left out: too slow for hundreds of examples; its partition is tested in
    test_triton.py).

Seeded (derandomize): CI runs the same examples every time. SWIN_KERNELS_LONG_PROPERTIES=1 runs many more.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import swin_kernels
from swin_kernels import functional, reference

from swin_family_models import backend_device

LONG = os.environ.get("SWIN_KERNELS_LONG_PROPERTIES") == "1"
PROPERTY_SETTINGS = settings(derandomize=True, deadline=None, max_examples=2000 if LONG else 150)
PARTITION_BACKENDS = [b for b in swin_kernels.available_backends() if b != "triton"]


@st.composite
def geometries(draw):
    """(H, W, window, shift, roll_before_pad): 1 <= H, W <= 20, 1 <= M <= 8 per axis, 0 <= s < M per axis."""
    height, width = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    window = (draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    shift = (draw(st.integers(0, window[0] - 1)), draw(st.integers(0, window[1] - 1)))
    return height, width, window, shift, draw(st.booleans())


def _random(shape, seed, dtype=torch.float64, device="cpu"):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype).to(device)


# ------------------------------------------------------------------------------------ from-scratch construction
def _pads(height, width, window):
    return (window[0] - height % window[0]) % window[0], (window[1] - width % window[1]) % window[1]


def scratch_partition(x, window, shift, roll_before_pad):
    """torch.roll by -shift and F.pad at the bottom/right, in the given order, then cut row-major windows."""
    b, h, w, c = x.shape
    pad_h, pad_w = _pads(h, w, window)
    if roll_before_pad:
        x = F.pad(torch.roll(x, (-shift[0], -shift[1]), (1, 2)), (0, 0, 0, pad_w, 0, pad_h))
    else:
        x = torch.roll(F.pad(x, (0, 0, 0, pad_w, 0, pad_h)), (-shift[0], -shift[1]), (1, 2))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window[0], window[0], wp // window[1], window[1], c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window[0] * window[1], c)


def scratch_reverse(windows, window, height, width, shift, roll_before_pad):
    """Windows back to the padded map, then crop and roll by +shift in the order undoing scratch_partition."""
    pad_h, pad_w = _pads(height, width, window)
    hp, wp = height + pad_h, width + pad_w
    c = windows.shape[-1]
    x = windows.view(-1, hp // window[0], wp // window[1], window[0], window[1], c).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(-1, hp, wp, c)
    if roll_before_pad:
        return torch.roll(x[:, :height, :width], shift, (1, 2))
    return torch.roll(x, shift, (1, 2))[:, :height, :width]


@PROPERTY_SETTINGS
@given(geometry=geometries(), batch=st.integers(1, 3), channels=st.integers(1, 5))
def test_reference_partition_and_reverse_match_the_construction(geometry, batch, channels):
    height, width, window, shift, roll_before_pad = geometry
    x = _random((batch, height, width, channels), 0)
    windows = reference.window_partition(x, window, shift, roll_before_pad=roll_before_pad)
    assert torch.equal(windows, scratch_partition(x, window, shift, roll_before_pad))
    other = _random(windows.shape, 1)  # reverse of arbitrary windows, padding tokens included
    expected = scratch_reverse(other, window, height, width, shift, roll_before_pad)
    assert torch.equal(reference.window_reverse(other, window, height, width, shift,
                                                roll_before_pad=roll_before_pad), expected)


# ------------------------------------------------------------------------------------------- fused attention
def _relative(actual, expected) -> float:
    scale = expected.abs().max().item()
    return (actual - expected).abs().max().item() / max(scale, 1e-300)


@pytest.mark.skipif("cpp" not in swin_kernels.available_backends(),
                    reason=f"the cpp backend cannot run here: {swin_kernels.backends.unavailable_reason('cpp')}")
@PROPERTY_SETTINGS
@given(geometry=geometries(), batch=st.integers(1, 3), heads=st.integers(1, 3), head_dim=st.integers(1, 16),
       with_pad_qkv=st.booleans(), with_bias=st.booleans())
def test_cpp_attention_matches_the_reference_fp64(geometry, batch, heads, head_dim, with_pad_qkv, with_bias):
    height, width, window, shift, roll_before_pad = geometry
    channels, tokens = heads * head_dim, window[0] * window[1]
    qkv = _random((batch, height, width, 3 * channels), 2)
    pad_qkv = _random((3 * channels,), 3) if with_pad_qkv else None
    bias = _random((heads, tokens, tokens), 4) if with_bias else None
    grad_out = _random((batch, height, width, channels), 5)
    results = []
    for backend in ("cpp", "reference"):
        inputs = [t.clone().requires_grad_() if t is not None else None for t in (qkv, pad_qkv, bias)]
        out = functional.shifted_window_attention(inputs[0], heads, window, shift, roll_before_pad=roll_before_pad,
                                                  pad_qkv=inputs[1], bias=inputs[2], backend=backend)
        present = [t for t in inputs if t is not None]
        grads = torch.autograd.grad(out, present, grad_out, allow_unused=True)  # pad_qkv unused without padding
        results.append((out, [torch.zeros_like(t) if g is None else g for t, g in zip(present, grads)]))
    (out, grads), (expected, expected_grads) = results
    assert _relative(out, expected) <= 1e-10
    for name, g, e in zip(("qkv", "pad_qkv", "bias"), grads, expected_grads):
        assert _relative(g, e) <= 1e-10, name


# ------------------------------------------------------------------------------------- partition round trip
@pytest.mark.parametrize("backend", PARTITION_BACKENDS)
@PROPERTY_SETTINGS
@given(geometry=geometries(), batch=st.integers(1, 3), channels=st.integers(1, 5),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_partition_then_reverse_is_the_identity(backend, geometry, batch, channels, dtype):
    height, width, window, shift, roll_before_pad = geometry
    x = _random((batch, height, width, channels), 6, dtype, backend_device(backend))
    windows = functional.window_partition(x, window, shift, backend=backend, roll_before_pad=roll_before_pad)
    assert torch.equal(windows, reference.window_partition(x, window, shift, roll_before_pad=roll_before_pad))
    back = functional.window_reverse(windows, window, height, width, shift, backend=backend,
                                     roll_before_pad=roll_before_pad)
    assert torch.equal(back, x)
