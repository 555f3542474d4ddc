"""Let torchvision's pure-Python models import beside a torch its compiled ops were not built for.

PyPI's torchvision wheel is built against PyPI's CUDA torch. Beside another build of the same torch version (the
CPU wheel, say) its compiled library ``torchvision._C`` fails to load, which torchvision tolerates everywhere but
in two fake-tensor registrations (``torchvision::nms`` and ``torchvision::qnms``) that need the ops' schemas.
Defining those two schemas before torchvision is imported is enough for its models (and timm, and transformers,
which import torchvision when it is installed) to import and run; only the compiled detection ops stay missing.

Users whose torchvision matches their torch need none of this: the function does nothing when the compiled
library loads. The test suite and the benchmarks call it before importing anything that imports torchvision.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

import torch

_SCHEMA = "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"


def _has_schema(name: str) -> bool:
    return bool(torch._C._jit_get_schemas_for_operator(name))


def make_torchvision_importable() -> str:
    """Define the two schemas when torchvision is installed but its compiled library cannot load. Returns what it did."""
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
