"""Which torch APIs swin_kernels uses, the first torch release that has each, and whether the installed torch has them.

    python -m tools.torch_api_check [--strict]

prints the table; exit status 1 when the package (run time or build) needs an API this torch lacks, or with
--strict when the benchmarks or tests do.

``since`` was read from the released wheels' sources (torch/library.py, torch/compiler, torch/_C/__init__.pyi,
torch/_dynamo/config.py, torch/utils/cpp_extension.py, torch/include/torch/library.h, the property names compiled
into libtorch_python.so) of torch 2.3.1, 2.4.1, 2.5.1, 2.6.0, 2.7.0, 2.8.0 and 2.9.0: the first of those that has
the API ("2.3": 2.3 or older). Triton rows count triton releases (3.3.1 and 3.4.0 read).
Optional APIs are feature-checked where they are used; their absence changes behaviour, not correctness.
Each row also names the file and text of one use, which the tests check is still there, so the table cannot
silently describe code that has gone.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
# Scopes: what needs the API. The package's minimum torch is the newest "since" of its required runtime and build
# APIs; the benchmarks and tests may need more.
PACKAGE_SCOPES = ("runtime", "build")


@dataclass(frozen=True)
class Api:
    name: str
    since: str  # first torch release with it, "major.minor"
    scope: str  # "runtime", "build", "benchmarks" or "tests"
    used_in: str  # a file (relative to the repository) that uses it ...
    pattern: str  # ... and the text of that use
    optional: bool = False  # feature-checked where used
    probe: Callable[[], bool | None] | None = None  # True: present, False: missing, None: cannot tell here
    note: str = ""
    package: str = "torch"  # whose release ``since`` counts

    @property
    def since_text(self) -> str:
        return self.since if self.package == "torch" else f"{self.package} {self.since}"


def _resolve(dotted: str) -> bool:
    """Whether ``dotted`` (a module, or attributes below one) exists, importing submodules on the way."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], 2):
        if not hasattr(obj, part):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
                continue
            except ImportError:
                return False
        obj = getattr(obj, part)
    return True


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _accepts_device_type(fn_name: str) -> Callable[[], bool]:
    def probe() -> bool:
        import torch

        try:
            getattr(torch, fn_name)("cpu")
        except TypeError:
            return False
        return True

    return probe


def _dynamo_config(name: str) -> Callable[[], bool]:
    def probe() -> bool:
        import torch._dynamo

        return hasattr(torch._dynamo.config, name)

    return probe


def _source_mentions(dotted: str, text: str) -> Callable[[], bool]:
    def probe() -> bool:
        module, _, attr = dotted.rpartition(".")
        return text in inspect.getsource(getattr(importlib.import_module(module), attr))

    return probe


def _header_mentions(header: str, text: str) -> Callable[[], bool | None]:
    def probe() -> bool | None:
        import torch

        path = Path(torch.__file__).parent / "include" / header
        return text in path.read_text() if path.exists() else None

    return probe


def _cuda_property(name: str) -> Callable[[], bool | None]:
    def probe() -> bool | None:
        import torch

        if not torch.cuda.is_available():
            return None
        return hasattr(torch.cuda.get_device_properties(0), name)

    return probe


def _marks_constant_result() -> bool:
    """swin_kernels.ops.constant marks functions the way torch.compiler.assume_constant_result does (without
    importing torch._dynamo at import time): that decorator must still set the same attribute."""
    import torch

    def probe():
        return None

    return getattr(torch.compiler.assume_constant_result(probe), "_dynamo_marked_constant", False) is True


APIS = [
    Api("torch.library.custom_op", "2.4", "runtime", "swin_kernels/ops/triton/library.py", "torch.library.custom_op("),
    Api("torch.library.register_fake", "2.4", "runtime", "swin_kernels/ops/_ext.py", "torch.library.register_fake("),
    Api("torch.library.register_autograd", "2.4", "runtime", "swin_kernels/ops/_ext.py",
        "torch.library.register_autograd("),
    Api("torch.compiler.assume_constant_result's mark (fn._dynamo_marked_constant)", "2.3", "runtime",
        "swin_kernels/ops/constant.py", "fn._dynamo_marked_constant = True", probe=_marks_constant_result),
    Api("torch.compiler.is_compiling", "2.3", "runtime", "swin_kernels/patches/common.py",
        "torch.compiler.is_compiling()"),
    Api("torch.is_autocast_enabled(device_type)", "2.4", "runtime", "swin_kernels/patches/common.py",
        "torch.is_autocast_enabled(x.device.type)", probe=_accepts_device_type("is_autocast_enabled")),
    Api("torch.get_autocast_dtype(device_type)", "2.4", "runtime", "swin_kernels/patches/common.py",
        "torch.get_autocast_dtype(x.device.type)", probe=_accepts_device_type("get_autocast_dtype")),
    Api("torch.multiprocessing.reductions.StorageWeakRef", "2.0", "runtime", "swin_kernels/patches/common.py",
        "from torch.multiprocessing.reductions import StorageWeakRef"),
    Api("torch.backends.cuda.matmul.fp32_precision", "2.9", "runtime", "swin_kernels/ops/triton/__init__.py",
        'getattr(matmul, "fp32_precision", None)', optional=True,
        probe=lambda: hasattr(__import__("torch").backends.cuda.matmul, "fp32_precision"),
        note="older torch: the legacy allow_tf32 flag is read"),
    Api("CUDA device property shared_memory_per_block_optin", "2.7", "runtime", "swin_kernels/ops/cuda.py",
        '"shared_memory_per_block_optin"', optional=True, probe=_cuda_property("shared_memory_per_block_optin"),
        note="older torch: a per-compute-capability table"),
    Api("C++ torch::Library::set_python_module", "2.4", "build", "csrc/swin_kernels.cpp", "m.set_python_module(",
        probe=_header_mentions("torch/library.h", "set_python_module")),
    Api("CppExtension/CUDAExtension(py_limited_api=True)", "2.6", "build", "setup.py", "py_limited_api=True",
        probe=_source_mentions("torch.utils.cpp_extension.CppExtension", "py_limited_api"),
        note="older torch links libtorch_python into the abi3-tagged extension"),
    Api("triton.knobs", "3.4", "runtime", "swin_kernels/ops/triton/configs.py", "from triton import knobs",
        optional=True, package="triton", probe=lambda: _resolve("triton.knobs") if _importable("triton") else None,
        note="the triton backend's kernels need it; torch <= 2.7 installs an older triton"),
    Api("torch.nn.attention.flex_attention.flex_attention", "2.5", "benchmarks", "benchmarks/peers.py",
        "from torch.nn.attention.flex_attention import flex_attention"),
    Api("torch.nn.attention.flex_attention.create_block_mask", "2.5", "benchmarks", "benchmarks/peers.py",
        "from torch.nn.attention.flex_attention import create_block_mask"),
    Api("torch._dynamo.config.recompile_limit", "2.7", "benchmarks", "benchmarks/contenders.py",
        '("recompile_limit", "cache_size_limit", 256)', optional=True, probe=_dynamo_config("recompile_limit"),
        note="older torch: cache_size_limit, accumulated_cache_size_limit, fail_on_cache_limit_hit"),
    Api("torch.utils.flop_counter.FlopCounterMode", "2.1", "benchmarks", "benchmarks/complexity.py",
        "FlopCounterMode"),
    Api("torch.distributed.fsdp.fully_shard", "2.6", "tests", "tests/test_training.py",
        "from torch.distributed.fsdp import fully_shard", optional=True, note="the FSDP2 test skips without it"),
    Api("torch.library.opcheck", "2.4", "tests", "tests/test_cuda_build.py", "torch.library.opcheck("),
    Api("torch._dynamo.testing.CompileCounterWithBackend", "2.1", "tests", "tests/test_compile.py",
        "CompileCounterWithBackend"),
]


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("+")[0].split(".")[:2])


def minimum(scopes=PACKAGE_SCOPES) -> tuple[str, list[Api]]:
    """The newest ``since`` among the required APIs of ``scopes``, and the APIs that set it."""
    required = [api for api in APIS if api.scope in scopes and not api.optional and api.package == "torch"]
    newest = max(required, key=lambda api: _version_key(api.since)).since
    return newest, [api for api in required if api.since == newest]


def status(api: Api) -> str:
    """"present", "missing" or "cannot check here" for the installed torch."""
    try:
        found = api.probe() if api.probe is not None else _resolve(api.name)
    except Exception as error:  # a probe that breaks says so rather than hiding the row
        return f"cannot check here ({type(error).__name__}: {error})"
    if found is None:
        return "cannot check here (needs a CUDA device)" if "CUDA" in api.name else "cannot check here"
    return "present" if found else "missing"


def main(argv=None) -> int:
    import argparse

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="the benchmarks' and tests' APIs are required too")
    args = parser.parse_args(argv)
    rows, missing, failing = [], [], []
    for api in APIS:
        state = status(api)
        kind = "optional" if api.optional else "required"
        if state == "missing" and not api.optional:
            missing.append(api)
            if args.strict or api.scope in PACKAGE_SCOPES:
                failing.append(api)
        rows.append((api.name, api.since_text, f"{api.scope}, {kind}", api.used_in, state, api.note))
    header = ("API", "since", "needed by", "used in", f"torch {torch.__version__}", "note")
    widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths)] + rows:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
    for scopes, what in ((PACKAGE_SCOPES, "the package (run time and build)"), (("benchmarks",), "the benchmarks"),
                         (("tests",), "the tests")):
        version, setters = minimum(scopes)
        print(f"minimum torch for {what}: {version} ({', '.join(api.name for api in setters)})")
    for api in missing:
        print(f"MISSING in torch {torch.__version__}: {api.name} (needed by the {api.scope})")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
