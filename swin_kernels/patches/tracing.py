"""A patched block under the tools that do not simply run its Python code: torch.fx, TorchScript, the ONNX exporters.

* torch.fx (torchvision's ``create_feature_extractor``, timm's FX feature extraction, ``symbolic_trace``): a
  patched method runs through ``call_patched``, which ``torch.fx.wrap`` makes a leaf: the traced graph holds one
  ``call_patched(block, name, x)`` node per patched block (the block as a ``get_attr``), and running the graph runs
  the fused path as the block has it then. Tracing into the method instead would fail on its shape-dependent
  Python (window clamping, padding) or bake one map size in.
* TorchScript compiles each block's *class* code, so a scripted patched model would silently run the unfused
  attention: ``torch.jit.script`` raises one error naming ``swin_kernels.unpatch`` instead (through the
  ``__prepare_scriptable__`` hook TorchScript calls on every module before compiling it).
* The TorchScript-based ONNX exporter (``torch.onnx.export(..., dynamo=False)``) has no translation of the fused
  ops: it gets an error saying to use the default ``dynamo=True`` exporter, which has (``swin_kernels.export``).
* ``torch.jit.trace`` records the ops the fused path calls on the traced input, the q/k/v weights read from the
  parameters on every call (nothing is cached), so the trace follows later weight updates; like any trace it is
  specific to the traced input size.
"""

from __future__ import annotations

import sys

import torch

SCRIPT_GUARD = "__prepare_scriptable__"  # the hook torch.jit.script calls on each module before compiling it


class ScriptingPatchedModelError(RuntimeError):
    """torch.jit.script of a model swin_kernels patched, or a legacy ONNX export of it."""


def call_patched(module, name: str, *args, **kwargs):
    """Run the method ``name`` of ``module`` as patched (an fx leaf: torch.fx records this call as one node).

    A graph traced before ``swin_kernels.unpatch`` runs the block's own method afterwards.
    """
    method = vars(module).get(name)
    function = getattr(method, "function", None)
    if function is None:
        return getattr(type(module), name)(module, *args, **kwargs)
    return function(module, *args, **kwargs)


torch.fx.wrap("call_patched")


def check_legacy_onnx_export(module) -> None:
    """Raise when the TorchScript-based ONNX exporter traces a patched block (torch.onnx.export(dynamo=False))."""
    if not torch.jit.is_tracing():
        return
    onnx = sys.modules.get("torch.onnx")  # not imported: no export is running (and importing it costs seconds)
    if onnx is not None and onnx.is_in_onnx_export():
        raise ScriptingPatchedModelError(
            f"torch.onnx.export(..., dynamo=False), the TorchScript-based exporter, cannot export the fused attention "
            f"of a swin_kernels-patched {type(module).__name__}: use torch.onnx.export(model, args, dynamo=True) "
            "(the default), which translates the fused ops into standard ONNX operators, or call "
            "swin_kernels.unpatch(model) first")


class ScriptGuard:
    """A patched block's ``__prepare_scriptable__``: refuses TorchScript while the block is patched; after
    ``unpatch`` it removes itself and lets the block be scripted."""

    def __init__(self, module) -> None:
        self.module = module

    def __call__(self):
        module = self.module
        if any(getattr(value, "function", None) is not None and type(value).__name__ == "PatchedMethod"
               for value in vars(module).values()):
            raise ScriptingPatchedModelError(
                f"torch.jit.script cannot compile a model patched by swin_kernels: TorchScript compiles the class "
                f"code of each {type(module).__name__} and would run the unfused attention instead of the fused op. "
                "Call swin_kernels.unpatch(model) before torch.jit.script, or use torch.compile / torch.export / "
                "torch.onnx.export(dynamo=True), which keep the fused op")
        vars(module).pop(SCRIPT_GUARD, None)
        return module


def guard_scripting(module) -> None:
    """Give a patched block the TorchScript guard (idempotent)."""
    if not isinstance(vars(module).get(SCRIPT_GUARD), ScriptGuard):
        vars(module)[SCRIPT_GUARD] = ScriptGuard(module)
