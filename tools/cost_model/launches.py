"""Record the Triton kernel launches of one call, without a GPU: the launchers run on meta tensors.

Every ``@triton.jit`` kernel object of ``swin_kernels.ops.triton`` is swapped for a recorder, and the ops' own
Python implementations (the functions behind the torch.library custom ops) are called with meta tensors. So the
grid, the arguments, the constexprs and the launch options come from the launchers as they are now, not from a
copy of them here.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import pkgutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPTION_NAMES = ("num_warps", "num_stages", "maxnreg")


@dataclass
class Launch:
    kernel: str  # the kernel's function name
    fn: object  # the triton JITFunction
    grid: tuple  # programs per axis
    args: tuple  # positional arguments (meta tensors, ints, floats)
    constexprs: dict  # keyword meta-parameters
    options: dict = field(default_factory=dict)  # num_warps, num_stages, maxnreg

    @property
    def programs(self) -> int:
        n = 1
        for g in self.grid:
            n *= g
        return n

    def arg(self, name: str):
        """A positional argument or constexpr by its name in the kernel's signature."""
        if name in self.constexprs:
            return self.constexprs[name]
        return self.args[self.fn.arg_names.index(name)]

    def named_args(self) -> dict:
        return {**dict(zip(self.fn.arg_names, self.args)), **self.constexprs}


def load_triton_ops(source_root: Path = ROOT):
    """swin_kernels.ops.triton from ``source_root``, without running swin_kernels/__init__.py: the cost model
    needs only the kernels and their launchers, not the modules and patches other work may be changing."""
    if "swin_kernels" not in sys.modules:
        spec = importlib.machinery.ModuleSpec("swin_kernels", None, is_package=True)
        package = importlib.util.module_from_spec(spec)
        package.__path__ = [str(source_root / "swin_kernels")]
        sys.modules["swin_kernels"] = package
    loaded = Path(sys.modules["swin_kernels"].__path__[0]).resolve()
    if loaded != (source_root / "swin_kernels").resolve():
        raise RuntimeError(f"swin_kernels is already imported from {loaded}, not {source_root}")
    triton_ops = importlib.import_module("swin_kernels.ops.triton")
    modules = [importlib.import_module(f"swin_kernels.ops.triton.{m.name}") for m in pkgutil.iter_modules(triton_ops.__path__)]
    return triton_ops, modules


class _Recorder:
    def __init__(self, fn, sink: list):
        self.fn, self.sink = fn, sink

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            options = {k: kwargs.pop(k) for k in OPTION_NAMES if k in kwargs}
            g = grid(kwargs) if callable(grid) else grid
            g = tuple(int(x) for x in (g if isinstance(g, tuple) else (g,)))
            self.sink.append(Launch(self.fn.fn.__name__, self.fn, g, args, kwargs, options))
        return launch


@contextmanager
def recording(modules):
    """Within the block, every kernel launch of ``modules`` is appended to the yielded list instead of run."""
    from triton.runtime.jit import JITFunction

    sink: list[Launch] = []
    swapped = []
    for module in modules:
        for name, value in list(vars(module).items()):
            # launched kernels only: @triton.jit helpers called from kernels are never indexed with a grid
            if isinstance(value, JITFunction):
                swapped.append((module, name, value))
                setattr(module, name, _Recorder(value, sink))
    try:
        yield sink
    finally:
        for module, name, value in swapped:
            setattr(module, name, value)


def record_call(workload, source_root: Path = ROOT, arch: int = 90) -> dict[str, list[Launch]]:
    """{"forward": [...], "backward": [...]} launches of one attention call of ``workload`` (workloads.py), in
    launch order, as the triton backend makes them on an sm_<arch> GPU (its family's tiles; pad_qkv and bias
    passed and needing gradients, as a patched block and the benchmarks do)."""
    _, modules = load_triton_ops(source_root)
    library = importlib.import_module("swin_kernels.ops.triton.library")
    configs = importlib.import_module("swin_kernels.ops.triton.configs")
    with _family(configs, f"sm_{arch}"):
        return _record(workload, modules, library)


@contextmanager
def _family(configs, family: str):
    """The launchers see meta tensors: within the block they take ``family``'s tiles, as on that GPU."""
    device_family = configs.device_family
    configs.device_family = lambda device: family
    try:
        yield
    finally:
        configs.device_family = device_family


def _record(workload, modules, library) -> dict[str, list[Launch]]:
    import torch

    w = workload
    meta = dict(device="meta", dtype=w.dtype)
    qkv = torch.empty(w.batch, *w.sizes, 3 * w.channels, **meta)
    pad = torch.empty(3 * w.channels, **meta)
    bias = torch.empty(w.heads, w.tokens, w.tokens, **meta)
    args = (w.heads, list(w.window), list(w.shift), False, w.head_dim ** -0.5, 0.0, w.fp32_precision)
    with recording(modules) as forward:
        out, lse, table = library.attention_fwd._init_fn(qkv, pad, bias, None, *args)
    with recording(modules) as backward:
        library.attention_bwd._init_fn(torch.empty_like(out), qkv, pad, bias, out, lse, table, None, *args,
                                       True, True)
    return {"forward": forward, "backward": backward}
