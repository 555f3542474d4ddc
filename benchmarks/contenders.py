"""Every contender of the benchmarks, each able to say why it cannot run a call.

A contender turns a Workload into a Prepared callable for a level ("branch": x -> qkv Linear -> attention ->
proj; "core": qkv map -> output) or raises Unsupported with the reason. Compiled contenders are built once
per shape and level and cached by the caller, so their compile time is paid once.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable

import torch

import swin_kernels
from swin_kernels import backends
from swin_kernels import reference as ref
from swin_kernels.backends import BACKEND_NAMES, Request

from . import peers
from .workload import Prepared, Workload, make_workload

BASELINE = "reference"



def _raise_dynamo_limits(config=torch._dynamo.config) -> None:
    """Each shape compiles its own graphs; without room for them dynamo would silently fall back to eager.
    (torch < 2.7 names the limits cache_size_limit / accumulated_cache_size_limit / fail_on_cache_limit_hit.)"""
    for new, old, value in (("recompile_limit", "cache_size_limit", 256),
                            ("accumulated_recompile_limit", "accumulated_cache_size_limit", 4096)):
        name = new if hasattr(config, new) else old
        setattr(config, name, max(getattr(config, name), value))
    setattr(config, "fail_on_recompile_limit_hit" if hasattr(config, "fail_on_recompile_limit_hit")
            else "fail_on_cache_limit_hit", True)


_raise_dynamo_limits()


class Unsupported(Exception):
    """The contender cannot run this call on this machine; the message says why."""


@dataclass(frozen=True)
class Contender:
    key: str  # short id used in test ids and tables
    label: str
    build: Callable[[str, Workload], Prepared]  # (level, workload) -> Prepared, or raises Unsupported


# ------------------------------------------------------------------------------------ swin_kernels backends
def _backend_builder(name: str):
    def build(level: str, w: Workload) -> Prepared:
        s = w.shape
        reason = backends.reason(name, Request("attention", w.device, w.dtype, (s.window, s.window), s.head_dim))
        if reason is None and name == "triton" and w.device.type != "cuda":
            reason = "on the CPU Triton only runs under its interpreter, a correctness tool whose speed means nothing"
        if reason is not None:
            raise Unsupported(f"backend {name!r} cannot run here: {reason}")
        if level == "branch":
            module = swin_kernels.FusedWindowAttention.from_window_attention(w.block.attn, s.shift, backend=name)
            return Prepared(module, (w.x,), tuple(module.parameters()))

        def core(qkv, pad_qkv, bias):
            return swin_kernels.shifted_window_attention(qkv, s.heads, s.window, s.shift, pad_qkv=pad_qkv,
                                                         bias=bias, scale=w.scale, backend=name)

        return Prepared(core, w.core_inputs())

    return build


# ------------------------------------------------------------------------------------------------------ peers
def _official(level: str, w: Workload) -> Prepared:
    if level == "core":
        raise Unsupported("the official code has no separate core: at this level it is swin_kernels[reference]")
    return Prepared(w.block.attention_branch, (w.x,), tuple(w.block.attn.parameters()))


@functools.lru_cache(maxsize=None)
def _compiled_reference_core():
    return torch.compile(ref.shifted_window_attention, dynamic=False)


def _compiled(level: str, w: Workload) -> Prepared:
    s = w.shape
    if level == "branch":
        module = swin_kernels.FusedWindowAttention.from_window_attention(w.block.attn, s.shift, backend="reference")
        return Prepared(torch.compile(module, dynamic=False), (w.x,), tuple(module.parameters()))
    compiled = _compiled_reference_core()

    def core(qkv, pad_qkv, bias):
        return compiled(qkv, s.heads, s.window, s.shift, pad_qkv, bias, w.scale)

    return Prepared(core, w.core_inputs())


def _windowed(make_attend: Callable[[Workload], peers.Attend]):
    def build(level: str, w: Workload) -> Prepared:
        attend = make_attend(w)
        if level == "branch":
            branch = peers.branch_through(attend, w.shape.geometry, w.block.attn)
            return Prepared(branch, (w.x,), tuple(w.block.attn.parameters()))
        return Prepared(peers.core_through(attend, w.shape.geometry, w.shape.heads), w.core_inputs())

    return build


def _sdpa_attend(w: Workload):
    return peers.sdpa_attend(w.shape.geometry, w.scale, w.dtype, w.device)


def _flex_attend(w: Workload):
    return peers.flex_attend(w.shape.geometry, w.shape.batch, w.scale, w.device)


def _hf(implementation: str):
    def build(level: str, w: Workload) -> Prepared:
        if level == "core":
            raise Unsupported("HF's SwinAttention runs its own q/k/v Linears on partitioned windows: no qkv-map entry")
        try:
            layer = peers.hf_swin_layer(w.block.attn, w.shape.geometry, implementation)
        except ImportError as error:
            raise Unsupported(f"transformers is not installed ({error})") from error
        return Prepared(peers.hf_attention_branch(layer), (w.x,), tuple(layer.attention.parameters()))

    return build


def all_contenders() -> list[Contender]:
    """The baseline first, then the other backends, then the peers."""
    kernels = [Contender(name, f"swin_kernels[{name}]", _backend_builder(name)) for name in BACKEND_NAMES]
    return kernels + [
        Contender("official", "eager official-structure PyTorch", _official),
        Contender("compiled", "torch.compile(reference)", _compiled),
        Contender("sdpa", "SDPA, bias+mask as attn_mask", _windowed(_sdpa_attend)),
        Contender("flex", "flex_attention (compiled)", _windowed(_flex_attend)),
        Contender("hf-eager", "HF SwinLayer (eager)", _hf("eager")),
        Contender("hf-sdpa", "HF SwinLayer (sdpa)", _hf("sdpa")),
    ]


CONTENDERS = {c.key: c for c in all_contenders()}


# ------------------------------------------------------------------------------- which cpp build ran
def cpp_isa(dtype: torch.dtype) -> str | None:
    """The instruction-set build of the cpp kernels that runs ``dtype`` here, None without the extension."""
    from swin_kernels.ops import cpp

    return cpp.kernel_isa(dtype) if cpp.unavailable_reason() is None else None


def contender_label(key: str, dtype: torch.dtype, device: torch.device | None = None) -> str:
    """The contender's label; for the cpp backend on the CPU with the build that ran, e.g. "(avx512bf16)"."""
    label = CONTENDERS[key].label
    isa = cpp_isa(dtype) if key == "cpp" and (device is None or device.type == "cpu") else None
    return f"{label} ({isa})" if isa else label


def cpp_kernel_info(dtypes: list[torch.dtype]) -> dict[str, str]:
    """Machine-table rows: the cpp build each dtype runs (and any SWIN_KERNELS_CPU_ISA), the CPU flags they use."""
    from swin_kernels.ops import cpp

    if cpp.unavailable_reason() is not None:
        return {"cpp kernels": f"not available ({cpp.unavailable_reason()})"}
    by_isa: dict[str, list[str]] = {}
    for dtype in dtypes:
        by_isa.setdefault(cpp.kernel_isa(dtype), []).append(str(dtype).removeprefix("torch."))
    chosen = os.environ.get(cpp.ISA_ENV)
    builds = "; ".join(f"{', '.join(names)}: {isa}" for isa, names in by_isa.items())
    return {
        "cpp kernel builds": builds + (f" ({cpp.ISA_ENV}={chosen})" if chosen else " (the widest this CPU runs)"),
        "CPU flags the kernels use": " ".join(cpp.cpu_flags()) or "none found (no /proc/cpuinfo)",
    }


class PreparedCache:
    """Workloads and built contenders, one per (shape, dtype) and (contender, level, shape, dtype).

    Unsupported answers are cached too, so a contender that cannot run is asked once. The reference's
    output and input gradient are cached per level and shape, for checking every other contender.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._workloads: dict = {}
        self._prepared: dict = {}
        self._expected: dict = {}

    def workload(self, shape, dtype) -> Workload:
        key = (shape, dtype)
        if key not in self._workloads:
            self._workloads[key] = make_workload(shape, self.device, dtype)
        return self._workloads[key]

    def prepared(self, key: str, level: str, shape, dtype) -> Prepared:
        cache_key = (key, level, shape, dtype)
        if cache_key not in self._prepared:
            try:
                self._prepared[cache_key] = CONTENDERS[key].build(level, self.workload(shape, dtype))
            except Unsupported as error:
                self._prepared[cache_key] = error
        value = self._prepared[cache_key]
        if isinstance(value, Unsupported):
            raise value
        return value


    def expected(self, level: str, shape, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The baseline's (output, gradient of inputs[0]) for this level and shape."""
        key = (level, shape, dtype)
        if key not in self._expected:
            prepared = self.prepared(BASELINE, level, shape, dtype)
            grad_out = self.workload(shape, dtype).grad_out
            with torch.no_grad():
                out = prepared.forward(*prepared.inputs)
            grad = prepared.gradients(prepared.forward(*prepared.inputs), grad_out)[0]
            self._expected[key] = (out, grad)
        return self._expected[key]
