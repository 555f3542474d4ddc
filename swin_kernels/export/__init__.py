"""Export paths of the fused ops: ONNX translations for torch.onnx.export(..., dynamo=True).

``onnx_translation_table()`` maps every fused op registered here (the compiled library's ``swin_kernels::*``,
the Triton ``swin_kernels_triton::*``) to its translation (``export/onnx.py``), for
``torch.onnx.export(..., custom_translation_table=...)``, e.g. of a ``torch.export`` program that holds the ops.

A plain ``torch.onnx.export(patched_model, args)`` finds them too: torch 2.13's exporter has no public way to add
ops to its default registry, so ``install()`` adds this table to every registry the exporter builds
(``ONNXRegistry.from_torchlib``), once torch's exporter module is imported, without importing it (or onnxscript)
any earlier. A translation the user passes in ``custom_translation_table`` takes precedence.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

import torch

_REGISTRY_MODULE = "torch.onnx._internal.exporter._registration"


def onnx_translation_table() -> dict:
    """{torch op overload: ONNX translation} for the fused ops available here (needs onnxscript)."""
    from . import onnx as translations

    _load_op_libraries()
    table = {}
    ops = (("swin_kernels", "window_attention_fwd", translations.window_attention_fwd),
           ("swin_kernels", "window_partition", translations.window_partition),
           ("swin_kernels", "window_reverse", translations.window_reverse),
           ("swin_kernels_triton", "attention_fwd", translations.triton_attention_fwd),
           ("swin_kernels_triton", "window_partition", translations.window_partition),
           ("swin_kernels_triton", "window_reverse", translations.window_reverse))
    for namespace, name, translation in ops:
        try:
            table[getattr(getattr(torch.ops, namespace), name).default] = translation
        except (AttributeError, RuntimeError):  # that library is not loaded here
            continue
    return table


def _load_op_libraries() -> None:
    """Register the ops whose library loads here, so the table can name them."""
    from ..ops import _ext  # noqa: F401

    try:
        from ..ops.triton import library  # noqa: F401
    except Exception:  # no (usable) triton: its ops cannot be in a graph either
        pass


def _add_to_default_registry(registration) -> None:
    cls = registration.ONNXRegistry
    if getattr(cls.from_torchlib, "_swin_kernels", False):
        return
    original = cls.from_torchlib.__func__

    def from_torchlib(cls, *args, **kwargs):
        registry = original(cls, *args, **kwargs)
        for target, translation in onnx_translation_table().items():
            registry.register_op(target, translation)
        return registry

    from_torchlib._swin_kernels = True
    cls.from_torchlib = classmethod(from_torchlib)


class _RegistryImportHook(importlib.abc.MetaPathFinder):
    """Adds the translations right after torch's exporter registry module is first imported."""

    def find_spec(self, name, path, target=None):
        if name != _REGISTRY_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            _add_to_default_registry(module)

        spec.loader.exec_module = exec_and_register
        return spec


def install() -> None:
    """Make torch.onnx.export(..., dynamo=True) translate the fused ops without a custom_translation_table."""
    module = sys.modules.get(_REGISTRY_MODULE)
    if module is not None:
        _add_to_default_registry(module)
    elif not any(isinstance(finder, _RegistryImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegistryImportHook())


__all__ = ["install", "onnx_translation_table"]
