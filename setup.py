"""Build: the Python package, plus the C++ extension ``swin_kernels._C`` (CPU kernels always, CUDA when torch has CUDA).

Environment knobs:
  SWIN_KERNELS_SKIP_CUDA=1           build the CPU part only, even with a CUDA build of torch
  SWIN_KERNELS_CUDA_ARCHS="80;90"    compute capabilities the CUDA kernels are built for (default: 80;90; sm_80 or
                                     newer: the bf16 tensor-core path needs it)
  SWIN_KERNELS_SKIP_EXTENSION=1      build no extension at all (the reference and triton backends still work)
  SWIN_KERNELS_REQUIRE_EXTENSION=1   fail the install when the extension does not build (default: warn and go on,
                                     the "cpp"/"cuda" backends then report what is missing)
"""

import glob
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> bool:
    return os.environ.get(name, "0") == "1"


def _cuda_arch_flags() -> list[str]:
    archs = os.environ.get("SWIN_KERNELS_CUDA_ARCHS", "80;90").replace(",", ";").replace(" ", ";")
    flags = []
    for arch in filter(None, archs.split(";")):
        cc = arch.replace(".", "")
        flags.append(f"-gencode=arch=compute_{cc},code=sm_{cc}")
    return flags


def _extension_build() -> dict:
    if _flag("SWIN_KERNELS_SKIP_EXTENSION"):
        return {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError as error:
        print(f"swin_kernels: torch is not importable ({error}); building without the C++ extension", file=sys.stderr)
        return {}

    class OptionalBuildExtension(BuildExtension):
        """A failed extension build leaves a working pure-Python package unless the extension is required."""

        def build_extension(self, ext):
            try:
                super().build_extension(ext)
            except Exception as error:  # compiler missing, compile error, ...
                if _flag("SWIN_KERNELS_REQUIRE_EXTENSION"):
                    raise
                print(f"swin_kernels: WARNING: building {ext.name} failed ({type(error).__name__}: {error}); "
                      "the package works without it, the cpp/cuda backends will say it is missing", file=sys.stderr)

    sources = ["csrc/swin_kernels.cpp", *sorted(glob.glob("csrc/cpu/*.cpp", root_dir=ROOT))]
    cxx = ["-O3", "-g0", "-ffp-contract=fast", "-fvisibility=hidden"]
    link = []
    if sys.platform.startswith("linux"):
        # at::parallel_for is inline code around `#pragma omp parallel`: without OpenMP it runs on one thread.
        cxx.append("-fopenmp")
        link.append("-fopenmp")
    with_cuda = torch.version.cuda is not None and CUDA_HOME is not None and not _flag("SWIN_KERNELS_SKIP_CUDA")
    options = dict(py_limited_api=True, extra_link_args=link)
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu", root_dir=ROOT))
        sources += sorted(glob.glob("csrc/cuda/*.cpp", root_dir=ROOT))  # the torch-facing host code
        nvcc = ["-O3", "-lineinfo", *_cuda_arch_flags()]
        extension = CUDAExtension("swin_kernels._C", sources, extra_compile_args={"cxx": cxx, "nvcc": nvcc}, **options)
    else:
        extension = CppExtension("swin_kernels._C", sources, extra_compile_args={"cxx": cxx}, **options)
    return dict(
        ext_modules=[extension],
        cmdclass={"build_ext": OptionalBuildExtension},
        options={"bdist_wheel": {"py_limited_api": "cp310"}},
    )


setup(**_extension_build())
