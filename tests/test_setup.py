"""The build against the user's torch: optional CUDA part, CUDA architectures, and the torch APIs the code needs.

A toy extension goes through setup.py's build command with torch's real nvcc-vs-torch CUDA version check failing
(torch.version.cuda is made to say 12.0 beside the installed nvcc), as it does on a machine whose toolkit and
torch differ in CUDA major version.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from setuptools import Distribution, Extension
from torch.utils import cpp_extension

from tools import torch_api_check
from swin_kernels.ops import cuda as cuda_backend

ROOT = Path(__file__).resolve().parents[1]
NVCC = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")


def load_setup():
    spec = importlib.util.spec_from_file_location("swin_kernels_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # defines the helpers; setup() runs only as __main__
    return module


SETUP = load_setup()


# ------------------------------------------------------------------------------------------ architectures
def test_newest_arch_gets_ptx_as_well_as_sass():
    assert SETUP.cuda_arch_flags("80;90") == ["-gencode=arch=compute_80,code=sm_80",
                                              "-gencode=arch=compute_90,code=[sm_90,compute_90]"]
    assert SETUP.cuda_arch_flags("9.0, 8.0") == SETUP.cuda_arch_flags("80;90")
    assert SETUP.cuda_archs("8.0+PTX 9.0 12.0") == [("80", True), ("90", False), ("120", True)]
    assert SETUP.cuda_arch_flags("90") == ["-gencode=arch=compute_90,code=[sm_90,compute_90]"]
    for bad in ("", "sm_9x", "ninety"):
        with pytest.raises(ValueError, match="SWIN_KERNELS_CUDA_ARCHS"):
            SETUP.cuda_archs(bad)


def test_cuda_build_is_configured_with_a_cpu_fallback(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", "/usr/local/cuda")
    monkeypatch.delenv("SWIN_KERNELS_SKIP_CUDA", raising=False)
    monkeypatch.setenv("SWIN_KERNELS_CUDA_ARCHS", "80;90")
    monkeypatch.chdir(ROOT)
    (extension,) = SETUP._extension_build()["ext_modules"]
    assert any(s.endswith(".cu") for s in extension.sources)
    assert "-gencode=arch=compute_90,code=[sm_90,compute_90]" in extension.extra_compile_args["nvcc"]
    fallback = extension.cpu_fallback
    assert fallback.name == extension.name == "swin_kernels._C"
    assert fallback.sources and not any("cuda" in s for s in fallback.sources)
    assert set(fallback.sources) < set(extension.sources)


def test_built_archs_are_read_from_the_fatbinary(tmp_path):
    if NVCC is None:
        pytest.skip("nvcc is not installed")
    (tmp_path / "k.cu").write_text("__global__ void k(float* x) { x[threadIdx.x] += 1.0f; }\n")
    library = tmp_path / "k.so"
    command = [NVCC, "-shared", "-Xcompiler", "-fPIC", "-cudart", "none", *SETUP.cuda_arch_flags("80;90"),
               str(tmp_path / "k.cu"), "-o", str(library)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    archs = cuda_backend.parse_fatbin(cuda_backend._elf_section(str(library), ".nv_fatbin"))
    assert archs == cuda_backend.BuiltArchs(sass=(80, 90), ptx=(90,))
    assert cuda_backend._elf_section(str(tmp_path / "k.cu"), ".nv_fatbin") is None  # not an ELF file


def test_which_gpus_a_build_runs_on():
    sass_only = cuda_backend.BuiltArchs(sass=(80, 90), ptx=())
    with_ptx = cuda_backend.BuiltArchs(sass=(80, 90), ptx=(90,))
    assert sass_only.runs_on((8, 0)) and sass_only.runs_on((8, 6)) and sass_only.runs_on((9, 0))
    assert not sass_only.runs_on((10, 0)) and not sass_only.runs_on((12, 0)) and not sass_only.runs_on((7, 5))
    assert with_ptx.runs_on((10, 0)) and with_ptx.runs_on((12, 0))  # the driver compiles the PTX
    assert not cuda_backend.BuiltArchs(sass=(90,), ptx=(90,)).runs_on((8, 9))
    reason = cuda_backend.arch_reason((12, 0), "NVIDIA RTX PRO 6000", sass_only)
    assert "no kernel image for this GPU (NVIDIA RTX PRO 6000, compute capability 12.0)" in reason
    assert "SASS for sm_80, sm_90 and no PTX" in reason and "SWIN_KERNELS_CUDA_ARCHS=120" in reason
    assert cuda_backend.arch_reason((9, 0), "H100", sass_only) is None
    assert cuda_backend.arch_reason((12, 0), "any", None) is None  # unknown archs: let the launch decide


def test_cuda_backend_declines_a_gpu_the_build_has_no_image_for(monkeypatch):
    monkeypatch.setattr(cuda_backend, "built_archs", lambda: cuda_backend.BuiltArchs(sass=(80, 90), ptx=()))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (10, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA B200")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cuda_backend._device_arch_reason.cache_clear()
    try:
        from swin_kernels.backends import Request

        request = Request("attention", torch.device("cuda"), torch.bfloat16, (7, 7), 32)
        assert "no kernel image for this GPU (NVIDIA B200" in cuda_backend.unsupported_reason(request)
        assert "no kernel image" in cuda_backend.unsupported_reason(
            Request("partition", torch.device("cuda:0"), torch.float32, (7, 7)))
    finally:
        cuda_backend._device_arch_reason.cache_clear()


# ------------------------------------------------------------------------ optional CUDA part of the build
TOY_MODULE = """#include <Python.h>
static struct PyModuleDef toy = {PyModuleDef_HEAD_INIT, "_toy", nullptr, -1, nullptr};
extern "C" PyMODINIT_FUNC PyInit__toy(void) { return PyModule_Create(&toy); }
"""


def build_toy(tmp_path, monkeypatch, fallback_source: str) -> list[Path]:
    """Build a toy CUDA extension (C++ + .cu) with setup.py's command; torch's CUDA version check fails."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.cpp").write_text(TOY_MODULE)
    (tmp_path / "toy.cu").write_text("__global__ void k() {}\n")
    (tmp_path / "broken.cpp").write_text("this is not C++\n")
    monkeypatch.setattr(torch.version, "cuda", "12.0")  # the installed nvcc is 13.x: major versions differ
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", str(Path(NVCC).resolve().parent.parent))
    extension = Extension("_toy", ["toy.cpp", "toy.cu"], language="c++")
    extension.cpu_fallback = Extension("_toy", [fallback_source], language="c++")
    command = SETUP.make_build_command(cpp_extension.BuildExtension)
    dist = Distribution({"name": "toy", "ext_modules": [extension], "cmdclass": {"build_ext": command}})
    build_ext = dist.get_command_obj("build_ext")
    build_ext.inplace = True
    build_ext.ensure_finalized()
    build_ext.run()
    return sorted(tmp_path.glob("_toy*.so"))


@needs_nvcc
def test_cuda_version_mismatch_falls_back_to_the_cpu_build(tmp_path, monkeypatch, capfd):
    monkeypatch.delenv("SWIN_KERNELS_REQUIRE_EXTENSION", raising=False)
    built = build_toy(tmp_path, monkeypatch, "toy.cpp")
    assert len(built) == 1, "the CPU-only fallback was not built"
    err = capfd.readouterr().err
    assert "building the CUDA kernels failed (RuntimeError" in err and "CPU-only extension" in err
    assert re.search(r"CUDA version .*mismatches", err)  # torch's own message, passed on


@needs_nvcc
def test_required_extension_fails_the_build(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIN_KERNELS_REQUIRE_EXTENSION", "1")
    with pytest.raises(RuntimeError, match="mismatches"):
        build_toy(tmp_path, monkeypatch, "toy.cpp")


@needs_nvcc
def test_a_failing_fallback_leaves_the_pure_python_package(tmp_path, monkeypatch, capfd):
    monkeypatch.delenv("SWIN_KERNELS_REQUIRE_EXTENSION", raising=False)
    assert build_toy(tmp_path, monkeypatch, "broken.cpp") == []  # and --inplace found nothing to copy
    assert "building _toy failed" in capfd.readouterr().err


def test_build_in_place_does_not_read_pyproject(tmp_path, monkeypatch):
    """What gpu-check builds with where setuptools is too old for pyproject.toml: the same command, no config."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "toy.cpp").write_text(TOY_MODULE)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "toy"\nlicense = 5\n')  # invalid everywhere
    command = SETUP.make_build_command(cpp_extension.BuildExtension)
    monkeypatch.setattr(SETUP, "_extension_build", lambda: {
        "ext_modules": [Extension("_toy", ["toy.cpp"], language="c++")], "cmdclass": {"build_ext": command}})
    SETUP.build_in_place()
    assert len(list(tmp_path.glob("_toy*.so"))) == 1


# ----------------------------------------------------------------------------------- torch APIs used here
def test_installed_torch_has_every_api_the_package_uses():
    result = subprocess.run([sys.executable, "-m", "tools.torch_api_check", "--strict"], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for api in torch_api_check.APIS:
        assert api.name in result.stdout
    assert "minimum torch for the package (run time and build): " in result.stdout


def test_api_table_describes_the_code():
    for api in torch_api_check.APIS:
        source = (ROOT / api.used_in).read_text()
        assert api.pattern in source, f"{api.name}: {api.used_in} no longer contains {api.pattern!r}"
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_spec = next(d for d in declared if d.startswith("torch"))
    minimum, setters = torch_api_check.minimum()
    assert torch_spec == f"torch>={minimum}", (torch_spec, [a.name for a in setters])
