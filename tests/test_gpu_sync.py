"""A patched model's forward and backward never synchronise the host with the GPU.

Every family (HF transformers V1/V2, timm V1/V2, torchvision V1/V2) runs a patched training step on the GPU
under ``torch.cuda.set_sync_debug_mode("error")``, in which any device-to-host synchronisation (``.item()``,
``bool(tensor)``, a non-pinned copy to the host, ...) raises. A synchronising call per block would leave the GPU
idle while the host launches the next block's work: the end-to-end gain a fast kernel brings would vanish.
"""

from __future__ import annotations

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("no CUDA device: the sync-debug checks need a GPU", allow_module_level=True)

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import swin_kernels  # noqa: E402
from swin_family_models import ALL_CASES, randomize_  # noqa: E402
from timm_torchvision_models import FAMILIES, timm_model, torchvision_model  # noqa: E402

HF = {"HF V1": "SwinForImageClassification", "HF V2": "Swinv2ForImageClassification"}


def _model(family: str):
    if family in HF:
        case = next(c for c in ALL_CASES if c.name == HF[family])
        return case, case.model(torch.float32, device="cuda")
    build = timm_model if family.startswith("timm") else torchvision_model
    return None, randomize_(build(family)).to("cuda")


class FusedCalls(TorchDispatchMode):
    """Counts calls of the Triton attention op (under autocast too: the fused path, not the reference)."""

    calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += func.namespace == "swin_kernels_triton" and "attention_fwd" in func.name()
        return func(*args, **(kwargs or {}))


def _logits(output) -> torch.Tensor:
    return output.logits if hasattr(output, "logits") else output


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("family", list(HF) + list(FAMILIES))
def test_patched_step_does_not_synchronise(family, autocast):
    case, model = _model(family)
    model = swin_kernels.patch(model.train(), backend="triton")
    if case is not None:
        inputs = case.inputs(torch.float32, device="cuda")
    else:
        inputs = {"x": torch.randn(2, 3, 36, 52, device="cuda")}
    for step in range(2):  # the first step compiles the kernels (which may synchronise); the second must not
        mode = "error" if step == 1 else "default"
        torch.cuda.set_sync_debug_mode(mode)
        try:
            with torch.autocast("cuda", torch.bfloat16, enabled=autocast):
                out = _logits(model(**inputs) if case is not None else model(inputs["x"]))
            out.float().square().mean().backward()
            with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=autocast):
                model.eval()
                _logits(model(**inputs) if case is not None else model(inputs["x"]))
                model.train()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    fused = FusedCalls()
    with fused, torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=autocast):
        model.eval()
        _logits(model(**inputs) if case is not None else model(inputs["x"]))
    blocks = sum(swin_kernels.patches.is_patched(m) for m in model.modules())
    assert fused.calls >= blocks, f"{family}: the Triton attention op ran {fused.calls} times for {blocks} blocks"
