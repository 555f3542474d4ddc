"""The "reference" backend: the unfused PyTorch implementation, differentiable by autograd, any device/dtype."""

from __future__ import annotations

from .. import reference


def unavailable_reason() -> str | None:
    return None


def unsupported_reason(request) -> str | None:
    return None


def window_attention(qkv, pad_qkv, bias, num_heads, window, shift, scale, dropout_p):
    return reference.shifted_window_attention(qkv, num_heads, window, shift, pad_qkv, bias, scale, dropout_p)


def window_partition(x, window, shift):
    return reference.window_partition(x, window, shift)


def window_reverse(windows, window, height, width, shift):
    return reference.window_reverse(windows, window, height, width, shift)
