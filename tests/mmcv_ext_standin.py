"""A stand-in for mmcv's compiled extension ``mmcv._ext``, so that mmdet, mmseg and mmpretrain import on the CPU.

mmcv's compiled ops (deformable convolution, RoI align, NMS, ...) cannot be built here, and ``mmcv-lite`` (mmcv's
pure-Python package, installed instead) has no ``mmcv._ext``. The three libraries import ``mmcv.ops`` at package
import time, and ``mmcv.ops`` asks ``mmcv._ext`` for each op's entry point (``mmcv.utils.ext_loader.load_ext``
only checks that the names exist). The Swin backbones never call any of them: they use plain torch layers and
mmcv's pure-Python bricks (FFN, build_norm_layer, PatchEmbed), which are the library's own code.

This module answers every name with a function that raises when called, naming the op, so a call that would need
a compiled op fails loudly instead of computing anything. Nothing else of mmcv or the libraries is replaced.
"""

from __future__ import annotations

import sys
import types

NAME = "mmcv._ext"


class CompiledOpMissing(RuntimeError):
    pass


def _missing(name: str):
    def op(*args, **kwargs):
        raise CompiledOpMissing(f"mmcv's compiled op {name} is not available (tests run with mmcv-lite and "
                                f"tests/mmcv_ext_standin.py); the Swin code under test must not call it")

    op.__name__ = name
    return op


def _op_named(name: str):
    if name.startswith("__"):  # dunder look-ups (copy, pickle, inspect) must see a plain module
        raise AttributeError(name)
    return _missing(name)


def install() -> None:
    """Put the stand-in on sys.modules as ``mmcv._ext`` unless a real compiled extension imports."""
    if NAME in sys.modules:
        return
    try:
        import mmcv._ext  # noqa: F401  (a real mmcv build)
        return
    except ImportError:
        pass
    module = types.ModuleType(NAME, __doc__)
    module.__getattr__ = _op_named
    module.__file__ = __file__
    sys.modules[NAME] = module


class _MultimodalOff:
    """Import hook: mmpretrain's multimodal models (BLIP, CLIP, ...) do not import under transformers 5 (names such
    as find_pruneable_heads_and_indices are gone). mmpretrain has its own switch for them,
    ``mmpretrain.utils.dependency.WITH_MULTIMODAL``, which it sets False itself when their requirements are
    missing; this sets it False just before ``mmpretrain.models.multimodal`` imports (mmdet imports mmpretrain
    when it is installed). The Swin code is untouched."""

    def find_spec(self, name, path=None, target=None):
        if name == "mmpretrain.models.multimodal":
            dependency = sys.modules.get("mmpretrain.utils.dependency")
            if dependency is not None:
                dependency.WITH_MULTIMODAL = False
            sys.meta_path.remove(self)
        return None


def install_all() -> None:
    """The mmcv._ext stand-in and the multimodal switch, before the first import of mmpretrain/mmdet/mmseg."""
    install()
    if "mmpretrain.models" not in sys.modules and not any(isinstance(f, _MultimodalOff) for f in sys.meta_path):
        sys.meta_path.insert(0, _MultimodalOff())
