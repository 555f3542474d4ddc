"""Let torchvision's pure-Python models import beside a torch its compiled ops were not built for.

PyPI's torchvision wheel is built against PyPI's CUDA torch. Beside another build of the same torch version (the
CPU wheel, say) its compiled library ``torchvision._C`` fails to load, which torchvision tolerates everywhere but
in two fake-tensor registrations (``torchvision::nms`` and ``torchvision::qnms``) that need the ops' schemas.
Defining those two schemas before torchvision is imported is enough for its models (and timm, and transformers,
which import torchvision when it is installed) to import and run; only the compiled detection ops stay missing.

Users whose torchvision matches their torch need none of this: the function does nothing when the compiled
library loads. Two ways to use it:

- ``make_torchvision_importable()`` before the first import of torchvision (the test suite and benchmarks do);
- ``python -m tools.torchvision_compat --install`` (``make setup`` runs it): copies this file into the
  environment's site-packages with a ``.pth`` line that puts an import hook on ``sys.meta_path`` at interpreter
  start. The hook imports nothing (torch included) until the first ``import torchvision``, then calls
  ``make_torchvision_importable()``, takes itself off ``sys.meta_path`` and lets the normal import go on, so any
  script run by that environment's python can import torchvision, timm and transformers' Swin.

Only the standard library is imported at module level: the hook runs at every interpreter start.
"""

from __future__ import annotations

import sys

_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
HOOK_MODULE = "_swin_kernels_torchvision_hook"  # the name this file gets in site-packages


def _has_schema(name: str) -> bool:
    import torch

    return bool(torch._C._jit_get_schemas_for_operator(name))


def make_torchvision_importable() -> str:
    """Define the two schemas when torchvision is installed but its compiled library cannot load. Returns what it did."""
    import glob
    import importlib.util
    import os

    import torch

    if "torchvision" in sys.modules:
        return "torchvision was already imported"
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return "torchvision is not installed"
    if _has_schema("torchvision::nms"):
        return "torchvision's ops are registered"
    libraries = glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so"))
    if libraries:
        try:
            torch.ops.load_library(libraries[0])
        except (OSError, ImportError, RuntimeError):
            pass
        else:
            return "torchvision's compiled library loads"
    for name in ("nms", "qnms"):
        if not _has_schema(f"torchvision::{name}"):
            torch.library.define(f"torchvision::{name}", _SCHEMA)
    return "defined the torchvision::nms / qnms schemas (its compiled library does not load beside this torch)"


class TorchvisionImportHook:
    """A ``sys.meta_path`` finder that finds nothing: on the first look-up of torchvision it prepares the import."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        torch = sys.modules.get("torch")
        if torch is not None and not hasattr(torch, "library"):
            return None  # asked while torch itself is still importing: try again at the next look-up
        uninstall()  # first: make_torchvision_importable looks torchvision up itself
        make_torchvision_importable()
        return None  # the normal finders import torchvision


def install() -> None:
    """Put the hook on sys.meta_path (what the .pth line calls at interpreter start); idempotent."""
    if not any(isinstance(finder, TorchvisionImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, TorchvisionImportHook())


def uninstall() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, TorchvisionImportHook)]


def install_into(site_packages: str) -> list[str]:
    """Write this module as ``HOOK_MODULE`` and its ``.pth`` file into ``site_packages``; returns the paths."""
    import os
    import py_compile
    import shutil

    module = os.path.join(site_packages, HOOK_MODULE + ".py")
    pth = os.path.join(site_packages, HOOK_MODULE + ".pth")
    shutil.copyfile(os.path.abspath(__file__), module)
    py_compile.compile(module, doraise=True)  # the hook is imported at every start: no recompiling there
    with open(pth, "w") as f:  # a .pth line that starts with "import" is executed by the site module
        f.write(f"import {HOOK_MODULE}; {HOOK_MODULE}.install()\n")
    return [module, pth]


def main(argv=None) -> int:
    import argparse
    import sysconfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true",
                        help="install the import hook into this python's site-packages")
    parser.add_argument("--site-packages", default=sysconfig.get_paths()["purelib"],
                        help="where to install it (default: this python's site-packages)")
    args = parser.parse_args(argv)
    if not args.install:
        print(make_torchvision_importable())
        return 0
    for path in install_into(args.site_packages):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
