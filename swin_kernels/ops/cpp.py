"""The "cpp" backend: the compiled library's multi-threaded, vectorised CPU kernels (fp32 and fp64 attention)."""

from __future__ import annotations

import torch

from . import _ext

_ATTENTION_DTYPES = (torch.float32, torch.float64)


def unavailable_reason() -> str | None:
    reason = _ext.unavailable_reason()
    if reason is None and not _ext.has_kernel("window_attention_fwd", "CPU"):
        reason = "the compiled extension has no CPU kernels"
    return reason


def unsupported_reason(request) -> str | None:
    if request.device.type != "cpu":
        return f"the cpp backend runs on CPU tensors, got a tensor on {request.device}"
    if request.op != "attention":
        return None  # partition / reverse move bytes: any dtype
    if request.dtype not in _ATTENTION_DTYPES:
        return f"the cpp attention kernels support float32 and float64, got {request.dtype}"
    if request.dropout:
        return "attention dropout is not implemented in the cpp backend (use dropout_p=0 / eval mode, or 'reference')"
    return None


# The ops dispatch on the tensors' device, so both compiled backends share one entry point per op.
window_attention = _ext.window_attention
window_partition = _ext.window_partition
window_reverse = _ext.window_reverse
