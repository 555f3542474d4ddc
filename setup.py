"""Build: the Python package, plus the C++ extension ``swin_kernels._C`` (CPU kernels always, CUDA when torch has CUDA).

Environment knobs:
  SWIN_KERNELS_SKIP_CUDA=1           build the CPU part only, even with a CUDA build of torch
  SWIN_KERNELS_CUDA_ARCHS="80;90"    compute capabilities the CUDA kernels are built for (default: 80;90; sm_80 or
                                     newer: the bf16 tensor-core path needs it). Each gets SASS; the newest also
                                     gets PTX, which the driver compiles for newer GPUs (sm_100, sm_120, ...).
                                     "90+PTX" adds PTX for another one.
  SWIN_KERNELS_SKIP_EXTENSION=1      build no extension at all (the reference and triton backends still work)
  SWIN_KERNELS_REQUIRE_EXTENSION=1   fail the install when the extension, CUDA part included, does not build
                                     (default: warn and go on: a failed CUDA part, e.g. nvcc and torch on different
                                     CUDA major versions, falls back to the CPU-only extension; a failed CPU part
                                     leaves the pure-Python package; the "cpp"/"cuda" backends say what is missing)
"""

import glob
import os
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CUDA_ARCHS = "80;90"


def _flag(name: str) -> bool:
    return os.environ.get(name, "0") == "1"


def _warn(text: str) -> None:
    print(f"swin_kernels: WARNING: {text}", file=sys.stderr, flush=True)


def cuda_archs(spec: str | None = None) -> list[tuple[str, bool]]:
    """[(compute capability without the dot, with PTX)] from a "80;90" / "8.0 9.0+PTX" list; the newest has PTX."""
    spec = os.environ.get("SWIN_KERNELS_CUDA_ARCHS", DEFAULT_CUDA_ARCHS) if spec is None else spec
    archs = {}
    for item in filter(None, spec.replace(",", ";").replace(" ", ";").split(";")):
        ptx = item.upper().endswith("+PTX")
        cc = item[:-4] if ptx else item
        cc = cc.replace(".", "").replace("sm_", "").replace("compute_", "")
        if not cc.isdigit():
            raise ValueError(f"SWIN_KERNELS_CUDA_ARCHS: {item!r} is not a compute capability like 90 or 9.0")
        archs[cc] = archs.get(cc, False) or ptx
    if not archs:
        raise ValueError(f"SWIN_KERNELS_CUDA_ARCHS={spec!r} names no compute capability")
    newest = max(archs, key=int)
    archs[newest] = True
    return sorted(archs.items(), key=lambda item: int(item[0]))


def cuda_arch_flags(spec: str | None = None) -> list[str]:
    flags = []
    for cc, ptx in cuda_archs(spec):
        code = f"[sm_{cc},compute_{cc}]" if ptx else f"sm_{cc}"
        flags.append(f"-gencode=arch=compute_{cc},code={code}")
    return flags


def _describe_archs(spec: str | None = None) -> str:
    archs = cuda_archs(spec)
    ptx = [cc for cc, with_ptx in archs if with_ptx]
    return f"SASS for {', '.join('sm_' + cc for cc, _ in archs)}, PTX for {', '.join('compute_' + cc for cc in ptx)}"


def _has_cuda_sources(ext) -> bool:
    return any(source.endswith(".cu") for source in ext.sources)


def make_build_command(base):
    """The build_ext command: ``base`` (torch's BuildExtension) made optional.

    torch checks nvcc against torch's CUDA version (and the host compiler against nvcc) in
    ``BuildExtension.build_extensions``, before any extension is built, so a mismatch surfaces there, not in
    ``build_extension``. Any failure of an extension with CUDA sources falls back to its ``cpu_fallback``
    (the CPU-only extension); a failure of that leaves no extension. SWIN_KERNELS_REQUIRE_EXTENSION=1 raises.
    """

    class OptionalBuildExtension(base):
        def build_extensions(self):
            compiler_state = dict(vars(self.compiler))  # torch wraps the compiler's methods; a retry starts clean
            try:
                super().build_extensions()
                return
            except Exception as error:
                if _flag("SWIN_KERNELS_REQUIRE_EXTENSION"):
                    raise
                failure = error
            fallbacks = [getattr(ext, "cpu_fallback", None) for ext in self.extensions]
            if any(_has_cuda_sources(ext) for ext in self.extensions) and all(fallbacks):
                _warn(f"building the CUDA kernels failed ({_one_line(failure)}); building the CPU-only extension "
                      "instead: the cuda backend will be unavailable (set SWIN_KERNELS_REQUIRE_EXTENSION=1 to fail "
                      "instead, SWIN_KERNELS_SKIP_CUDA=1 to skip the CUDA part)")
                vars(self.compiler).clear()
                vars(self.compiler).update(compiler_state)
                for ext, fallback in zip(self.extensions, fallbacks):
                    # in place: the command has finalized ext (private attributes), not the fallback
                    for name, value in vars(fallback).items():
                        if not name.startswith("_"):
                            setattr(ext, name, value)
                try:
                    super().build_extensions()
                    return
                except Exception as error:
                    failure = error
            _warn(f"building {', '.join(ext.name for ext in self.extensions)} failed ({_one_line(failure)}); the "
                  "package works without it, the cpp/cuda backends will say it is missing")
            self.extensions = []  # nothing for --inplace or the wheel to copy

    return OptionalBuildExtension


def _one_line(error: BaseException) -> str:
    args = error.args
    try:  # torch raises RuntimeError(format, *values) for the CUDA version mismatch
        text = args[0] % args[1:] if len(args) > 1 and isinstance(args[0], str) else str(error)
    except TypeError:
        text = str(error)
    return f"{type(error).__name__}: {' '.join(text.split())[:300]}"


def _extension_build() -> dict:
    if _flag("SWIN_KERNELS_SKIP_EXTENSION"):
        return {}
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
    except ImportError as error:
        print(f"swin_kernels: torch is not importable ({error}); building without the C++ extension", file=sys.stderr)
        return {}

    sources = ["csrc/swin_kernels.cpp", *sorted(glob.glob("csrc/cpu/*.cpp", root_dir=ROOT))]
    cxx = ["-O3", "-g0", "-ffp-contract=fast", "-fvisibility=hidden"]
    link = []
    if sys.platform.startswith("linux"):
        # at::parallel_for is inline code around `#pragma omp parallel`: without OpenMP it runs on one thread.
        cxx.append("-fopenmp")
        link.append("-fopenmp")

    def options() -> dict:  # fresh lists for each extension: torch appends flags to them in place
        return dict(py_limited_api=True, extra_link_args=list(link))

    cpu_extension = CppExtension("swin_kernels._C", sources, extra_compile_args={"cxx": list(cxx)}, **options())
    with_cuda = torch.version.cuda is not None and not _flag("SWIN_KERNELS_SKIP_CUDA")
    if with_cuda and CUDA_HOME is None:
        _warn(f"torch has CUDA {torch.version.cuda} but no CUDA toolkit (nvcc) was found: building the CPU kernels "
              "only (set CUDA_HOME to build the CUDA ones)")
        with_cuda = False
    if with_cuda:
        cuda_sources = sorted(glob.glob("csrc/cuda/*.cu", root_dir=ROOT))
        cuda_sources += sorted(glob.glob("csrc/cuda/*.cpp", root_dir=ROOT))  # the torch-facing host code
        nvcc = ["-O3", "-lineinfo", *cuda_arch_flags()]
        print(f"swin_kernels: building the CUDA kernels with {_describe_archs()}", file=sys.stderr)
        extension = CUDAExtension("swin_kernels._C", sources + cuda_sources,
                                  extra_compile_args={"cxx": list(cxx), "nvcc": nvcc}, **options())
        extension.cpu_fallback = cpu_extension
    else:
        extension = cpu_extension
    return dict(
        ext_modules=[extension],
        cmdclass={"build_ext": make_build_command(BuildExtension)},
        options={"bdist_wheel": {"py_limited_api": "cp310"}},
    )


def build_in_place() -> None:
    """``setup.py build_ext --inplace`` without reading pyproject.toml, for setuptools older than 77, which rejects
    its ``license`` field; `make gpu-check` uses it on such a machine (nothing can be upgraded there).

        python -c "import runpy; runpy.run_path('setup.py', run_name='swin_kernels_setup')['build_in_place']()"
    """
    from setuptools import Distribution

    dist = Distribution({"name": "swin-kernels", "script_name": "setup.py", **_extension_build()})
    dist.get_command_obj("build_ext").inplace = True
    dist.run_command("build_ext")


# setuptools runs this file as __main__ (``python setup.py ...``, pip, build); tests import it for its helpers.
if __name__ == "__main__":
    setup(**_extension_build())
