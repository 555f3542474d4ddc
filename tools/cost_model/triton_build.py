"""Compile a recorded Triton launch for sm_90 (or sm_80) as the runtime would, and disassemble it; cached.

The signature and specialisation come from Triton's own specialiser applied to the recorded arguments (integer
1 becomes a constant, multiples of 16 and 16-byte aligned pointers get the divisibility hint), so the binary is the
one a launch with those arguments compiles. Compiled as tools/compile_report.py does: triton.compile(ASTSource(...),
target=GPUTarget("cuda", arch, 32)).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .launches import ROOT, Launch
from .sass import disassemble

CACHE = ROOT / "results" / "cost_model" / "cache"


def specialise(launch: Launch) -> tuple[dict, dict, dict]:
    """(signature, constexprs, attrs) for ASTSource, from the launch's arguments."""
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.nvidia.compiler import CUDABackend

    values = launch.named_args()
    signature, constexprs, attrs = {}, {}, {}
    for index, param in enumerate(launch.fn.params):
        value = values[param.name]
        if param.is_constexpr:
            signature[param.name] = "constexpr"
            constexprs[param.name] = value
            continue
        kind, attr = native_specialize_impl(CUDABackend, value, param.is_constexpr, not param.do_not_specialize,
                                            not param.do_not_specialize_on_alignment)
        signature[param.name] = kind
        if kind == "constexpr":
            constexprs[param.name] = value
        elif isinstance(attr, str) and attr:
            attrs[(index,)] = CUDABackend.parse_attr(attr)
    return signature, constexprs, attrs


def _source_digest(fn) -> str:
    """The kernel's own source and every module of its package it may call (helpers live in sibling files)."""
    folder = Path(fn.fn.__code__.co_filename).parent
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def build(launch: Launch, arch: int = 90) -> dict:
    """{"sass": disassembly with line info, "registers", "shared", "spills", "source_file"} of the launch."""
    import triton

    signature, constexprs, attrs = specialise(launch)
    options = dict(launch.options)
    key_data = json.dumps([launch.kernel, arch, triton.__version__, _source_digest(launch.fn), signature,
                           sorted((k, repr(v)) for k, v in constexprs.items()),
                           sorted((repr(k), repr(v)) for k, v in attrs.items()), sorted(options.items())])
    key = hashlib.sha256(key_data.encode()).hexdigest()[:32]
    cached = CACHE / f"{launch.kernel}-sm{arch}-{key}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    compiled = triton.compile(ASTSource(launch.fn, signature, constexprs, attrs),
                              target=GPUTarget("cuda", arch, 32), options=options)
    sass, registers, spills = disassemble(compiled.asm["cubin"])
    result = {"kernel": launch.kernel, "arch": arch, "sass": sass, "registers": registers, "spills": spills,
              "shared": int(compiled.metadata.shared), "num_warps": int(compiled.metadata.num_warps),
              "source_file": launch.fn.fn.__code__.co_filename}
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(result))
    return result


def triton_tool(name: str) -> str:
    import triton

    return str(Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name)

