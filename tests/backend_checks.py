"""Shared checks that compare any backend with the PyTorch reference.

A backend's test file only names the backend and parametrizes over the cases below:

    @pytest.mark.parametrize("case", ATTENTION_CASES, ids=str)
    def test_attention_fp32(case):
        check_attention(BACKEND, case, torch.float32)

Tolerances: fp64 ≤ 1e-10 and fp32 ≤ 1e-5 of the largest reference value; fp16/bf16 pass when their error
against the fp64 reference is at most twice PyTorch's own error in that dtype plus a small floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import swin_kernels
from swin_kernels.ops.outputs import poison_outputs

RELATIVE_TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
LOW_PRECISION = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class AttentionCase:
    """A (B, H, W, ·) map, or with ``depth`` a (B, D, H, W, ·) volume whose window and shift are triples."""

    batch: int
    height: int
    width: int
    heads: int
    head_dim: int
    window: int | tuple[int, ...]
    shift: int | tuple[int, ...]
    roll_before_pad: bool = False
    depth: int | None = None

    def __str__(self) -> str:
        def text(v):
            return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)

        return (f"B{self.batch}_{text(self.spatial)}_h{self.heads}_d{self.head_dim}"
                f"_M{text(self.window)}_s{text(self.shift)}" + ("_rollfirst" if self.roll_before_pad else ""))

    @property
    def spatial(self) -> tuple[int, ...]:
        """(H, W), or (D, H, W) for a volume."""
        return (self.height, self.width) if self.depth is None else (self.depth, self.height, self.width)

    @property
    def channels(self) -> int:
        return self.heads * self.head_dim

    @property
    def window_pair(self) -> tuple[int, ...]:
        """The window per spatial axis (a pair for a map, a triple for a volume)."""
        return self.window if isinstance(self.window, tuple) else (self.window,) * len(self.spatial)

    @property
    def shift_pair(self) -> tuple[int, ...]:
        return self.shift if isinstance(self.shift, tuple) else (self.shift,) * len(self.spatial)

    @property
    def tokens(self) -> int:
        n = 1
        for m in self.window_pair:
            n *= m
        return n

    def op_geometry(self) -> tuple:
        """(window, shift, roll_before_pad) as the registered ops take them."""
        return list(self.window_pair), list(self.shift_pair), self.roll_before_pad


# Awkward on purpose: padding on one or both sides, H != W, odd batches, N that is / is not a power of two,
# a single window, windows larger than the map, and the Swin-T window 7 shifted by 3.
ATTENTION_CASES = [
    AttentionCase(1, 7, 7, 2, 16, 7, 0),     # exactly one window
    AttentionCase(2, 14, 14, 2, 16, 7, 3),   # Swin-style shifted, divisible
    AttentionCase(3, 9, 13, 1, 32, 4, 2),    # padded both ways, H != W, odd batch
    AttentionCase(1, 10, 6, 3, 16, 5, 2),    # N = 25, taller than wide
    AttentionCase(2, 8, 16, 2, 64, 8, 4),    # N = 64, a power of two
    AttentionCase(1, 11, 12, 2, 16, 6, 5),   # shift = window - 1, padded height only
    AttentionCase(1, 5, 3, 1, 16, 7, 3),     # window larger than the map: all padding
    AttentionCase(1, 12, 12, 1, 32, 12, 6),  # N = 144 (Swin-B 384² window)
]
# The general geometry: rectangular windows, per-axis shifts, timm's order (roll the map, then pad it).
GEOMETRY_CASES = [
    AttentionCase(2, 9, 13, 2, 16, (4, 5), (2, 0)),          # rectangular, rows shifted only, padded
    AttentionCase(1, 7, 20, 1, 32, (7, 4), (0, 2)),          # timm's per-axis clamp: short axis unshifted
    AttentionCase(2, 10, 11, 2, 16, (3, 6), (1, 4), True),   # roll before pad, padded both ways
    AttentionCase(1, 14, 14, 2, 16, 7, 3, True),             # roll before pad on a divisible map: same as official
    AttentionCase(1, 2, 3, 1, 16, 7, 3, True),               # timm always_partition: roll larger than the map
    AttentionCase(1, 5, 9, 2, 32, (2, 8), (1, 5), True),     # N = 16 from a thin window
]
# Volumes (B, D, H, W, C) with (depth, rows, columns) windows: padding on each axis, shifts on each axis, the
# roll-first order, a window larger than the volume, an odd batch.
VOLUME_CASES = [
    AttentionCase(1, 4, 5, 2, 8, (2, 2, 3), (1, 1, 1), depth=3),           # padded depth and width, all shifted
    AttentionCase(3, 6, 6, 1, 16, (2, 3, 3), (0, 1, 2), depth=4),          # divisible, depth unshifted, odd batch
    AttentionCase(1, 5, 7, 2, 16, (3, 2, 4), (2, 0, 1), True, depth=5),    # roll before pad, padded on every axis
    AttentionCase(1, 8, 8, 1, 16, (2, 4, 4), (1, 2, 2), depth=4),          # Video Swin-like: 27 regions met
    AttentionCase(2, 3, 3, 1, 8, (4, 4, 4), (2, 2, 2), depth=3),           # window larger than the volume
]
VOLUME_PARTITION_CASES = [
    # (batch, depth, height, width, channels, window, shift, roll_before_pad)
    (2, 5, 9, 10, 6, (2, 4, 3), (1, 2, 1), False),
    (1, 4, 6, 6, 3, (2, 3, 3), (0, 1, 2), True),
    (3, 3, 3, 3, 4, (4, 4, 4), (2, 2, 2), False),
]
PARTITION_CASES = [
    # (batch, height, width, channels, window, shift, roll_before_pad)
    (2, 14, 14, 8, 7, 3, False),
    (3, 9, 13, 5, 4, 2, False),
    (1, 10, 6, 16, 5, 0, False),
    (1, 5, 3, 3, 7, 3, False),
    (2, 16, 24, 32, 8, 4, False),
    (2, 9, 13, 5, (4, 5), (2, 0), False),
    (2, 10, 11, 6, (3, 6), (1, 4), True),
    (1, 2, 3, 4, 7, 3, True),
]


def partition_case_id(case) -> str:
    return "B{}_{}x{}_C{}_M{}_s{}".format(*case[:6]).replace(" ", "") + ("_rollfirst" if case[6] else "")


def volume_partition_case_id(case) -> str:
    return "B{}_{}x{}x{}_C{}_M{}_s{}".format(*case[:7]).replace(" ", "") + ("_rollfirst" if case[7] else "")


def attention_inputs(case: AttentionCase, dtype: torch.dtype, device="cpu", seed: int = 0) -> dict:
    """Fresh random qkv map, pad vector (qkv bias) and dense bias, all requiring grad."""
    gen = torch.Generator().manual_seed(seed)
    n = case.tokens
    c3 = 3 * case.channels
    tensors = {
        "qkv": torch.randn(case.batch, *case.spatial, c3, generator=gen, dtype=torch.float64),
        "pad_qkv": torch.randn(c3, generator=gen, dtype=torch.float64),
        "bias": torch.randn(case.heads, n, n, generator=gen, dtype=torch.float64),
    }
    return {k: v.to(device=device, dtype=dtype).requires_grad_() for k, v in tensors.items()}


def run_attention(backend: str, case: AttentionCase, inputs: dict, grad_out: torch.Tensor | None = None,
                  dropout_p: float = 0.0):
    """Forward, and backward with ``grad_out`` when given: (output, {name: grad})."""
    out = swin_kernels.shifted_window_attention(
        inputs["qkv"], case.heads, case.window, case.shift, roll_before_pad=case.roll_before_pad,
        pad_qkv=inputs["pad_qkv"], bias=inputs["bias"], dropout_p=dropout_p, backend=backend)
    grads = {}
    if grad_out is not None:
        values = torch.autograd.grad(out, list(inputs.values()), grad_out.to(out.dtype), materialize_grads=True)
        grads = dict(zip(inputs, values))
    return out, grads


def max_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return (actual.double() - expected.double()).abs().max().item()


def assert_relative_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values (an output element was not written?)"
    scale = max(expected.double().abs().max().item(), 1e-30)
    error = max_error(actual, expected)
    assert error <= rtol * scale, f"{what}: max error {error:.3e} > {rtol:.0e} x {scale:.3e}"


def assert_low_precision_close(actual, reference_low, reference_64, what: str, floor: float = 1e-3) -> None:
    """Error of a low-precision result ≤ 2 x PyTorch's own error in that dtype + floor (relative)."""
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    scale = max(reference_64.abs().max().item(), 1e-30)
    ours, torchs = max_error(actual, reference_64), max_error(reference_low, reference_64)
    assert ours <= 2 * torchs + floor * scale, f"{what}: error {ours:.3e} vs PyTorch's own {torchs:.3e}"


def check_attention(backend: str, case: AttentionCase, dtype: torch.dtype, device="cpu", poison: bool = True,
                    low_precision_floor: float | None = None):
    """Forward and all input gradients of ``backend`` against the reference (outputs poisoned first).

    ``low_precision_floor``: compare fp32 as a low-precision dtype with that relative floor (TF32 dot products).
    """
    inputs_64 = attention_inputs(case, torch.float64, device)
    grad_out = torch.randn(case.batch, *case.spatial, case.channels,
                           generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(device)
    expected, expected_grads = run_attention("reference", case, inputs_64, grad_out)
    inputs = attention_inputs(case, dtype, device)
    if poison:
        with poison_outputs():
            actual, actual_grads = run_attention(backend, case, inputs, grad_out)
    else:
        actual, actual_grads = run_attention(backend, case, inputs, grad_out)
    assert actual.dtype == dtype
    if dtype in LOW_PRECISION or low_precision_floor is not None:
        floor = 1e-3 if low_precision_floor is None else low_precision_floor
        torch_low, torch_low_grads = run_attention("reference", case, attention_inputs(case, dtype, device), grad_out)
        assert_low_precision_close(actual, torch_low, expected, f"{backend} {case} output", floor)
        for name in expected_grads:
            assert_low_precision_close(actual_grads[name], torch_low_grads[name], expected_grads[name],
                                       f"{backend} {case} d{name}", floor)
        return
    rtol = RELATIVE_TOLERANCE[dtype]
    assert_relative_close(actual, expected, rtol, f"{backend} {case} output")
    for name in expected_grads:
        assert_relative_close(actual_grads[name], expected_grads[name], rtol, f"{backend} {case} d{name}")


def check_bias_grad_deterministic(backend: str, case: AttentionCase, dtype=torch.float32, device="cpu") -> None:
    """Two runs give bit-identical gradients (no float atomics in the reductions)."""
    grad_out = torch.randn(case.batch, *case.spatial, case.channels, dtype=dtype,
                           generator=torch.Generator().manual_seed(3)).to(device)
    runs = [run_attention(backend, case, attention_inputs(case, dtype, device), grad_out)[1] for _ in range(2)]
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name]), f"{backend}: d{name} differs between two runs"


def check_partition(backend: str, batch, height, width, channels, window, shift, roll_before_pad: bool = False,
                    dtype=torch.float32, device="cpu") -> None:
    """window_partition / window_reverse are pure data movement: forward and backward must be exact."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, height, width, channels, generator=gen, dtype=dtype).to(device).requires_grad_()
    windows = _check_exact(backend, "window_partition", x, gen, lambda t, name: swin_kernels.window_partition(
        t, window, shift, backend=name, roll_before_pad=roll_before_pad))
    windows = torch.randn(windows.shape, generator=gen, dtype=dtype).to(device).requires_grad_()
    _check_exact(backend, "window_reverse", windows, gen, lambda t, name: swin_kernels.window_reverse(
        t, window, height, width, shift, backend=name, roll_before_pad=roll_before_pad))


def check_volume_partition(backend: str, batch, depth, height, width, channels, window, shift,
                           roll_before_pad: bool = False, dtype=torch.float32, device="cpu") -> None:
    """window_partition / window_reverse of a (B, D, H, W, C) volume: forward and backward exact."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, depth, height, width, channels, generator=gen, dtype=dtype).to(device).requires_grad_()
    windows = _check_exact(backend, "window_partition", x, gen, lambda t, name: swin_kernels.window_partition(
        t, window, shift, backend=name, roll_before_pad=roll_before_pad))
    windows = torch.randn(windows.shape, generator=gen, dtype=dtype).to(device).requires_grad_()
    _check_exact(backend, "window_reverse", windows, gen, lambda t, name: swin_kernels.window_reverse(
        t, window, height, width, shift, backend=name, roll_before_pad=roll_before_pad, depth=depth))


def _check_exact(backend: str, what: str, source: torch.Tensor, gen: torch.Generator, op) -> torch.Tensor:
    """``op(source, backend)`` equals ``op(source, "reference")`` bit for bit, and so does its gradient.

    The backend's outputs are poisoned first; returns the reference's output.
    """
    expected = op(source, "reference")
    with poison_outputs():
        actual = op(source, backend)
    assert torch.equal(actual, expected), f"{backend} {what} differs"
    grad = torch.randn(expected.shape, generator=gen, dtype=source.dtype).to(source.device)
    with poison_outputs():
        (grad_actual,) = torch.autograd.grad(actual, source, grad)
    (grad_expected,) = torch.autograd.grad(expected, source, grad)
    assert torch.equal(grad_actual, grad_expected), f"{backend} {what} backward differs"
    return expected
