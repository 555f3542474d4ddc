"""Functional API: validate the call, pick a backend, run it.

Validation lives here once, so every backend receives well-formed, contiguous tensors and a bad call
fails with a clear message instead of a wrong answer. Windows and shifts are an int (square) or a pair
(rows, columns) for a (B, H, W, C) map, an int or a triple (depth, rows, columns) for a (B, D, H, W, C) volume;
``roll_before_pad`` selects timm's order (roll the map, then pad it) instead of the official one (pad, then
roll); see ``swin_kernels.geometry``.
"""

from __future__ import annotations

import torch

from . import backends
from .backends import Request
from .geometry import WindowGeometry, check_feature_map, check_same_device_dtype, spatial_dims


def _input_geometry(x, name, window_size, shift_size, roll_before_pad) -> WindowGeometry:
    """The geometry of a (B, H, W, ·) map, or of a (B, D, H, W, ·) volume when the window or shift is a triple."""
    volume = spatial_dims(window_size, shift_size) == 3 or (isinstance(x, torch.Tensor) and x.dim() == 5
                                                           and isinstance(window_size, int)
                                                           and isinstance(shift_size, int))
    shape = check_feature_map(x, name, volume=volume)
    return WindowGeometry.of(shape[1:-1], window_size, shift_size, roll_before_pad)


def window_partition(x: torch.Tensor, window_size, shift_size=0, backend: str | None = None, *,
                     roll_before_pad: bool = False):
    """pad and roll(-shift) -> partition: (B, H, W, C) -> (B·nW, Mh·Mw, C); a volume (B, D, H, W, C) with a window
    of 3 ints (or an int) -> (B·nW, Md·Mh·Mw, C). Differentiable."""
    g = _input_geometry(x, "x", window_size, shift_size, roll_before_pad)
    impl = backends.resolve(backend, Request("partition", x.device, x.dtype, g.window))
    return impl.window_partition(x.contiguous(), g)


def window_reverse(windows: torch.Tensor, window_size, height: int, width: int, shift_size=0,
                   backend: str | None = None, *, roll_before_pad: bool = False, depth: int | None = None):
    """reverse -> roll(+shift) and crop: (B·nW, Mh·Mw, C) -> (B, H, W, C); with ``depth`` (and a window of 3 ints,
    or an int) -> (B, D, H, W, C). Differentiable."""
    if not isinstance(windows, torch.Tensor) or windows.dim() != 3:
        shape = tuple(windows.shape) if isinstance(windows, torch.Tensor) else type(windows).__name__
        raise ValueError(f"windows must have shape (B*nW, Mh*Mw, C), got {shape}")
    if not windows.is_floating_point():
        raise TypeError(f"windows must be a floating-point tensor, got {windows.dtype}")
    if depth is None and spatial_dims(window_size, shift_size) == 3:
        raise ValueError("a window of 3 ints reverses onto a volume: pass depth=")
    g = WindowGeometry(height, width, window_size, shift_size, roll_before_pad, depth=depth)
    if windows.shape[1] != g.tokens or windows.shape[0] == 0 or windows.shape[0] % g.num_windows:
        raise ValueError(
            f"windows of shape {tuple(windows.shape)} do not tile a {'x'.join(map(str, g.sizes))} "
            f"{'map' if g.dims == 2 else 'volume'} with window {g.window}: "
            f"expected (B*{g.num_windows}, {g.tokens}, C)"
        )
    impl = backends.resolve(backend, Request("reverse", windows.device, windows.dtype, g.window))
    return impl.window_reverse(windows.contiguous(), g)


def shifted_window_attention(
    qkv: torch.Tensor,
    num_heads: int,
    window_size,
    shift_size=0,
    *,
    roll_before_pad: bool = False,
    pad_qkv: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
    backend: str | None = None,
) -> torch.Tensor:
    """Swin's (shifted) window attention on the unpartitioned qkv map, in one call.

    qkv:      (B, H, W, 3C), the qkv Linear applied to the normed map, laid out [q | k | v], heads major; or a
              (B, D, H, W, 3C) volume.
    window_size, shift_size: int or (rows, columns) for a map, int or (depth, rows, columns) for a volume;
              0 <= shift < window on each axis.
    roll_before_pad: roll the map, then pad it (timm); default pad, then roll (official code, HF, torchvision).
    pad_qkv:  (3C,) what padded tokens see as their q/k/v: the qkv Linear's bias (None: zeros).
    bias:     (heads, N, N) additive bias, N = Mh·Mw (Md·Mh·Mw), e.g. the gathered relative position bias.
    Returns   (B, [D,] H, W, C): softmax(q kᵀ·scale + bias + shift mask) v per window, back at each token's place.
    No window clamping happens here; modules apply their family's clamping before calling.
    """
    g = _input_geometry(qkv, "qkv", window_size, shift_size, roll_before_pad)
    return attention_on_geometry(qkv, num_heads, g, pad_qkv=pad_qkv, bias=bias, scale=scale, dropout_p=dropout_p,
                                 backend=backend)


def attention_on_geometry(qkv: torch.Tensor, num_heads: int, g: WindowGeometry, *, pad_qkv=None, bias=None,
                          scale: float | None = None, dropout_p: float = 0.0, backend: str | None = None):
    """``shifted_window_attention`` for a caller that already holds the call's geometry ``g`` of qkv's map (the
    patched blocks build one per call): the same checks of the tensors, without building the geometry again."""
    if tuple(qkv.shape[1:-1]) != g.sizes:  # also a map's geometry given a volume, and the other way round
        raise ValueError(f"qkv of shape {tuple(qkv.shape)} does not hold the {'x'.join(map(str, g.sizes))} map of "
                         "its geometry")
    c3 = qkv.shape[-1]
    if not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive int, got {num_heads!r}")
    if c3 % (3 * num_heads):
        raise ValueError(f"qkv's last dimension {c3} is not 3 * num_heads * head_dim with num_heads={num_heads}")
    if pad_qkv is not None:
        check_same_device_dtype(qkv, "pad_qkv", pad_qkv)
        if tuple(pad_qkv.shape) != (c3,):
            raise ValueError(f"pad_qkv must have shape ({c3},), got {tuple(pad_qkv.shape)}")
        pad_qkv = pad_qkv.contiguous()
    if bias is not None:
        check_same_device_dtype(qkv, "bias", bias)
        if tuple(bias.shape) != (num_heads, g.tokens, g.tokens):
            raise ValueError(f"bias must have shape ({num_heads}, {g.tokens}, {g.tokens}), got {tuple(bias.shape)}")
        bias = bias.contiguous()
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must be in [0, 1), got {dropout_p}")
    head_dim = c3 // (3 * num_heads)
    scale = head_dim**-0.5 if scale is None else float(scale)
    request = Request("attention", qkv.device, qkv.dtype, g.window, head_dim, dropout_p > 0.0)
    impl = backends.resolve(backend, request)
    return impl.window_attention(qkv.contiguous(), pad_qkv, bias, num_heads, g, scale, dropout_p)
