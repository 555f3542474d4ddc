"""The "cuda" backend: the compiled library's CUDA kernels (fp32, fp16, bf16; tensor cores for half types)."""

from __future__ import annotations

import functools
import json
import struct
import sys
from dataclasses import dataclass

import torch

from . import _ext

_ATTENTION_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# ------------------------------------------------------------------------- what the kernels run, from C++
@dataclass(frozen=True)
class Limits:
    """What the compiled CUDA attention kernels run, as the extension's op ``cuda_limits()`` reports it
    (csrc/cuda/kernel_limits.h): nothing here is a copy of a C++ number."""

    max_tokens: int  # tokens of one window
    head_dim_multiple: int  # head_dim is a multiple of this ...
    max_head_dim: int  # ... up to this
    bf16_min_capability: tuple[int, int]
    attention_smem: dict  # (pass, element bytes, head_dim) -> dynamic shared memory per block, bytes
    smem_optin: dict  # (major, minor) -> cudaDevAttrMaxSharedMemoryPerBlockOptin
    smem_optin_other: int  # a compute capability not in smem_optin

    @classmethod
    def from_json(cls, text: str) -> "Limits":
        data = json.loads(text)
        return cls(data["max_tokens"], data["head_dim_multiple"], data["max_head_dim"],
                   tuple(data["bf16_min_capability"]),
                   {(r["pass"], r["element_bytes"], r["head_dim"]): r["bytes"] for r in data["attention_smem"]},
                   {tuple(r["capability"]): r["bytes"] for r in data["smem_optin"]}, data["smem_optin_other"])

    def head_dim_supported(self, head_dim: int) -> bool:
        return self.head_dim_multiple <= head_dim <= self.max_head_dim and head_dim % self.head_dim_multiple == 0

    @property
    def smem_everywhere(self) -> int:
        """Shared memory per block that every GPU of the table allows."""
        return min(self.smem_optin_other, *self.smem_optin.values())

    def smem_needed(self, element_bytes: int, head_dim: int) -> int:
        """Shared memory per block of the forward and backward kernels of a call (a training step runs both)."""
        return max(self.attention_smem[(p, element_bytes, head_dim)] for p in ("forward", "backward"))


@functools.lru_cache(maxsize=None)
def limits() -> Limits | None:
    """The limits the loaded extension reports; None when it is not loaded or does not export ``cuda_limits`` (the
    builds with the CUDA kernels do: csrc/cuda/limits_op.h)."""
    if _ext.unavailable_reason() is not None:
        return None
    try:
        return Limits.from_json(torch.ops.swin_kernels.cuda_limits())
    except (AttributeError, RuntimeError):  # an extension built before the op existed
        return None


_NO_LIMITS = ("the compiled extension does not report the CUDA kernels' limits (it has no op "
              "swin_kernels::cuda_limits: built without the CUDA kernels, or from older sources; rebuild it)")


# ------------------------------------------------------------------------- which GPUs the build can run on
@dataclass(frozen=True)
class BuiltArchs:
    """Compute capabilities (e.g. 90 for 9.0) of the extension's SASS images and PTX, read from its fatbinary."""

    sass: tuple[int, ...]
    ptx: tuple[int, ...]

    def describe(self) -> str:
        parts = [f"SASS for {', '.join(f'sm_{a}' for a in self.sass)}" if self.sass else "no SASS",
                 f"PTX for {', '.join(f'compute_{a}' for a in self.ptx)}" if self.ptx else "no PTX"]
        return " and ".join(parts)

    def runs_on(self, capability: tuple[int, int]) -> bool:
        """Whether a GPU of this compute capability can load a kernel image of the build.

        SASS runs on GPUs of its major version with an equal or higher minor one (sm_80 on 8.6, not on 9.0);
        PTX is compiled by the driver for any GPU at least as new as its virtual architecture.
        """
        major, minor = capability
        device = 10 * major + minor
        return (any(a // 10 == major and a % 10 <= minor for a in self.sass)
                or any(a <= device for a in self.ptx))


_FATBIN_MAGIC = 0xBA55ED50  # header of each fatbinary in the .nv_fatbin section
_KIND_PTX, _KIND_SASS = 1, 2


def _elf_section(path: str, wanted: str) -> bytes | None:
    """The bytes of section ``wanted`` of a 64-bit little-endian ELF file, or None (absent, or not such a file)."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return None
        shoff, = struct.unpack_from("<Q", header, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", header, 0x3A)
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        sections = [struct.unpack_from("<IIQQQQ", table, i * shentsize) for i in range(shnum)]
        _, _, _, _, names_offset, names_size = sections[shstrndx]
        f.seek(names_offset)
        names = f.read(names_size)
        for name_index, _, _, _, offset, size in sections:
            if names[name_index:names.index(b"\0", name_index)].decode() == wanted:
                f.seek(offset)
                return f.read(size)
    return None


def parse_fatbin(data: bytes) -> BuiltArchs:
    """The architectures of every entry of the (possibly several, concatenated) fatbinaries in ``data``."""
    sass, ptx = set(), set()
    offset = 0
    while offset + 16 <= len(data):
        magic, _, header_size, fat_size = struct.unpack_from("<IHHQ", data, offset)
        if magic != _FATBIN_MAGIC:
            offset += 8  # fatbinaries are 8-byte aligned in the section
            continue
        entry, end = offset + header_size, offset + header_size + fat_size
        while entry + 32 <= end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch, = struct.unpack_from("<I", data, entry + 28)
            (ptx if kind == _KIND_PTX else sass if kind == _KIND_SASS else set()).add(arch)
            entry += entry_header + payload
        offset = end
    return BuiltArchs(tuple(sorted(sass)), tuple(sorted(ptx)))


@functools.lru_cache(maxsize=None)
def built_archs() -> BuiltArchs | None:
    """The architectures the loaded extension's CUDA kernels were built for; None when unknown (no extension,
    not an ELF file, or no fatbinary found)."""
    module = sys.modules.get("swin_kernels._C")
    path = getattr(module, "__file__", None)
    if path is None:
        return None
    try:
        data = _elf_section(path, ".nv_fatbin")
    except (OSError, struct.error, ValueError, UnicodeDecodeError):
        return None
    if not data:
        return None
    archs = parse_fatbin(data)
    return archs if archs.sass or archs.ptx else None


def arch_reason(capability: tuple[int, int], gpu: str, archs: BuiltArchs | None) -> str | None:
    """Why the build's kernels cannot load on this GPU (None: they can, or the build's archs are unknown)."""
    if archs is None or archs.runs_on(capability):
        return None
    cc = f"{capability[0]}{capability[1]}"
    return (f"the compiled extension has no kernel image for this GPU ({gpu}, compute capability "
            f"{capability[0]}.{capability[1]}): it holds {archs.describe()}; rebuild it for this GPU with "
            f"SWIN_KERNELS_CUDA_ARCHS={cc} (see setup.py)")


@functools.lru_cache(maxsize=None)
def _device_arch_reason(index: int) -> str | None:
    return arch_reason(torch.cuda.get_device_capability(index), torch.cuda.get_device_name(index), built_archs())


def _arch_reason_for(device: torch.device) -> str | None:
    """The arch check for the request's GPU; nothing to check without a fatbinary or a CUDA device."""
    if built_archs() is None or not torch.cuda.is_available():
        return None
    return _device_arch_reason(device.index if device.index is not None else torch.cuda.current_device())


# ------------------------------------------------------------------------------------------ backend API
def unavailable_reason() -> str | None:
    if not torch.cuda.is_available():
        return "no CUDA device is available (torch.cuda.is_available() is False)"
    reason = _ext.unavailable_reason()
    if reason is not None:
        return reason
    if not _ext.has_kernel("window_attention_fwd", "CUDA"):
        return ("the compiled extension has no CUDA kernels: it was built without them (torch without CUDA, no "
                "nvcc, an nvcc of another CUDA major version than torch's, which setup.py answers with a CPU-only "
                "build and a warning, or SWIN_KERNELS_SKIP_CUDA=1)")
    reasons = [_device_arch_reason(i) for i in range(torch.cuda.device_count())]
    if all(reasons):
        return reasons[0]  # no visible GPU can load the kernels; with one that can, calls say which device can't
    return None


def _smem_optin(device: torch.device, known: Limits) -> int:
    properties = torch.cuda.get_device_properties(device)
    allowed = getattr(properties, "shared_memory_per_block_optin", None)
    if allowed is None:  # torch < 2.7: the kernels' own table
        allowed = known.smem_optin.get((properties.major, properties.minor), known.smem_optin_other)
    return allowed


def unsupported_reason(request) -> str | None:
    if request.device.type != "cuda":
        return f"the cuda backend runs on CUDA tensors, got a tensor on {request.device}"
    if (why := _arch_reason_for(request.device)) is not None:
        return why
    if request.op != "attention":
        return None  # partition / reverse move bytes: any dtype
    if request.dtype not in _ATTENTION_DTYPES:
        return f"the cuda attention kernels support float32, float16 and bfloat16, got {request.dtype}"
    known = limits()
    if known is None:
        return _NO_LIMITS
    if request.tokens > known.max_tokens:
        window = "x".join(map(str, request.window))
        return (f"the cuda attention kernels support windows of up to {known.max_tokens} tokens, got {window} "
                f"({request.tokens} tokens)")
    if request.head_dim is not None and not known.head_dim_supported(request.head_dim):
        return (f"the cuda attention kernels need head_dim a multiple of {known.head_dim_multiple} up to "
                f"{known.max_head_dim}, got {request.head_dim}")
    if request.dtype == torch.bfloat16 and torch.cuda.get_device_capability(request.device) < known.bf16_min_capability:
        major, minor = known.bf16_min_capability
        return f"the cuda bf16 attention kernels need compute capability {major}.{minor} or newer"
    if request.head_dim is not None:
        element_bytes = torch.finfo(request.dtype).bits // 8
        needed = known.smem_needed(element_bytes, request.head_dim)
        if needed > known.smem_everywhere and needed > (allowed := _smem_optin(request.device, known)):
            return (f"the cuda {str(request.dtype).removeprefix('torch.')} attention kernels with head_dim "
                    f"{request.head_dim} need {needed} bytes of shared memory per block; this GPU allows {allowed}")
    if request.dropout:
        return "attention dropout is not implemented in the cuda backend (use dropout_p=0 / eval mode, or 'triton')"
    return None


# The ops dispatch on the tensors' device, so both compiled backends share one entry point per op.
window_attention = _ext.window_attention
window_partition = _ext.window_partition
window_reverse = _ext.window_reverse
