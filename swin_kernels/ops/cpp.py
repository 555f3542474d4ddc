"""The "cpp" backend: the compiled library's multi-threaded, vectorised CPU kernels.

Attention in fp32, fp64, bf16 and fp16 (the half types compute in fp32: inputs converted as a window is staged,
outputs and gradients rounded once). ``kernel_isa(dtype)`` names the instruction-set build that runs a dtype here.
"""

from __future__ import annotations

import torch

from . import _ext

# The instruction-set builds of the attention kernels, widest first, and the CPU flags (as /proc/cpuinfo names
# them) each needs; SWIN_KERNELS_CPU_ISA=<name> runs one of them instead of the widest this CPU has.
ISA_BUILDS = {
    "avx512bf16": ("avx512f", "avx512vl", "avx512dq", "avx512bw", "avx512_bf16", "avx2", "fma", "f16c"),
    "avx512": ("avx512f", "avx512vl", "avx512dq", "avx2", "fma", "f16c"),
    "avx2": ("avx2", "fma", "f16c"),
    "generic": (),
}
ISA_ENV = "SWIN_KERNELS_CPU_ISA"

_ATTENTION_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


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
        return f"the cpp attention kernels support float32, float64, bfloat16 and float16, got {request.dtype}"
    if request.dropout:
        return "attention dropout is not implemented in the cpp backend (use dropout_p=0 / eval mode, or 'reference')"
    return None


def kernel_isa(dtype: torch.dtype = torch.float32) -> str:
    """The build that runs attention of ``dtype`` here: "avx512bf16", "avx512", "avx2" or "generic".

    The widest the CPU supports unless SWIN_KERNELS_CPU_ISA names another (read at every call, like the kernels).
    Only bf16 differs between avx512bf16 and avx512 (native bf16 dot products in the forward), so for the other
    dtypes that build reports "avx512".
    """
    reason = unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"cpp backend unavailable: {reason}")
    return torch.ops.swin_kernels.cpu_kernel_isa(dtype)


def cpu_flags() -> list[str]:
    """The flags of /proc/cpuinfo that the builds use and this CPU has (empty where there is no /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            line = next((line for line in cpuinfo if line.startswith("flags")), "")
    except OSError:
        return []
    have = set(line.split(":", 1)[-1].split())
    wanted = dict.fromkeys(flag for flags in ISA_BUILDS.values() for flag in flags)
    return [flag for flag in wanted if flag in have]


def runnable_isas() -> list[str]:
    """The builds whose flags /proc/cpuinfo lists, widest first (the kernels ask the CPU itself, not this list)."""
    have = set(cpu_flags())
    return [name for name, flags in ISA_BUILDS.items() if have.issuperset(flags)]


# The ops dispatch on the tensors' device, so both compiled backends share one entry point per op.
window_attention = _ext.window_attention
window_partition = _ext.window_partition
window_reverse = _ext.window_reverse
