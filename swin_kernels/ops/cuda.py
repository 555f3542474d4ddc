"""The "cuda" backend: the compiled library's CUDA kernels (fp32, fp16, bf16; tensor cores for half types)."""

from __future__ import annotations

import torch

from . import _ext

_ATTENTION_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_TOKENS = 64  # N = Mh*Mw <= 64 tokens: one window's scores stay in shared memory (csrc/cuda/launch_api.h)
MAX_HEAD_DIM = 64  # and a multiple of 16, the tensor-core tile
# The fp32 backward keeps q, k, v, dO and two fp32 score tiles in shared memory: up to 133120 bytes at head_dim 64
# (`make cuda-check` prints the table), more than GPUs with ~100 KB per block (sm_86, sm_89) allow.
FP32_WIDE_HEAD_SMEM = 133120


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
    if request.tokens > MAX_TOKENS:
        return (f"the cuda attention kernels support windows of up to {MAX_TOKENS} tokens (e.g. 8x8), got "
                f"{request.window[0]}x{request.window[1]}")
    if request.head_dim is not None and (request.head_dim % 16 or request.head_dim > MAX_HEAD_DIM):
        return f"the cuda attention kernels need head_dim a multiple of 16 up to {MAX_HEAD_DIM}, got {request.head_dim}"
    if request.dtype == torch.bfloat16 and torch.cuda.get_device_capability(request.device) < (8, 0):
        return "the cuda bf16 attention kernels need compute capability 8.0 or newer"
    if request.dtype == torch.float32 and (request.head_dim or 0) > 32:
        allowed = torch.cuda.get_device_properties(request.device).shared_memory_per_block_optin
        if allowed < FP32_WIDE_HEAD_SMEM:
            return (f"the cuda fp32 attention backward with head_dim > 32 needs {FP32_WIDE_HEAD_SMEM} bytes of shared "
                    f"memory per block; this GPU allows {allowed}")
    if request.dropout:
        return "attention dropout is not implemented in the cuda backend (use dropout_p=0 / eval mode, or 'triton')"
    return None


# The ops dispatch on the tensors' device, so both compiled backends share one entry point per op.
window_attention = _ext.window_attention
window_partition = _ext.window_partition
window_reverse = _ext.window_reverse
