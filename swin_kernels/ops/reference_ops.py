"""The "reference" backend: the unfused PyTorch implementation, differentiable by autograd, any device/dtype."""

from __future__ import annotations

from .. import reference


def unavailable_reason() -> str | None:
    return None


def unsupported_reason(request) -> str | None:
    return None


def window_attention(qkv, pad_qkv, bias, num_heads, geometry, scale, dropout_p):
    g = geometry
    return reference.shifted_window_attention(qkv, num_heads, g.window, g.shift, pad_qkv, bias, scale, dropout_p,
                                              g.roll_before_pad)


def window_partition(x, geometry):
    g = geometry
    return reference.window_partition(x, g.window, g.shift, g.roll_before_pad)


def window_reverse(windows, geometry):
    g = geometry
    return reference.window_reverse(windows, g.window, g.height, g.width, g.shift, g.roll_before_pad, depth=g.depth)
