"""The "cuda" backend: the compiled library's CUDA kernels (fp32, fp16, bf16; tensor cores for half types)."""

from __future__ import annotations

import torch

from . import _ext

_ATTENTION_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_WINDOW = 8  # N = M*M <= 64 tokens: one window's scores stay in shared memory (csrc/cuda/launch_api.h)
MAX_HEAD_DIM = 64  # and a multiple of 16, the tensor-core tile


def unavailable_reason() -> str | None:
    reason = _ext.unavailable_reason()
    if reason is not None:
        return reason
    if not _ext.has_kernel("window_attention_fwd", "CUDA"):
        return ("the compiled extension has no CUDA kernels (torch was built without CUDA, or "
                "SWIN_KERNELS_SKIP_CUDA=1 was set when it was built)")
    if not torch.cuda.is_available():
        return "no CUDA device is available"
    return None


def unsupported_reason(request) -> str | None:
    if request.device.type != "cuda":
        return f"the cuda backend runs on CUDA tensors, got a tensor on {request.device}"
    if request.op != "attention":
        return None  # partition / reverse move bytes: any dtype
    if request.dtype not in _ATTENTION_DTYPES:
        return f"the cuda attention kernels support float32, float16 and bfloat16, got {request.dtype}"
    if request.window > MAX_WINDOW:
        return f"the cuda attention kernels support windows up to {MAX_WINDOW} (N <= 64 tokens), got {request.window}"
    if request.head_dim is not None and (request.head_dim % 16 or request.head_dim > MAX_HEAD_DIM):
        return f"the cuda attention kernels need head_dim a multiple of 16 up to {MAX_HEAD_DIM}, got {request.head_dim}"
    if request.dtype == torch.bfloat16 and torch.cuda.get_device_capability(request.device) < (8, 0):
        return "the cuda bf16 attention kernels need compute capability 8.0 or newer"
    if request.dropout:
        return "attention dropout is not implemented in the cuda backend (use dropout_p=0 / eval mode, or 'triton')"
    return None


# The ops dispatch on the tensors' device, so both compiled backends share one entry point per op.
window_attention = _ext.window_attention
window_partition = _ext.window_partition
window_reverse = _ext.window_reverse
