"""pytest-benchmark: spandrel's SwinIR x2 patched by swin_kernels.patch against unpatched (eager inference, CPU).

See benchmarks/end_to_end_restoration.py. Under --benchmark-disable (make test) a tiny SwinIR runs each contender
once; in both modes the patched model must agree with the unpatched one and have every block patched.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

import swin_kernels
from swin_kernels.patches import is_patched

from .end_to_end_restoration import swinir
from .harness import RELATIVE_TOLERANCE

pytest.importorskip("spandrel", reason="spandrel is not installed (pyproject test)")

PRECISIONS = {"fp32": None, "bf16 autocast": torch.bfloat16}
_MODELS = {}


def _models(tiny: bool):
    if tiny not in _MODELS:
        _MODELS.clear()
        model = swinir(groups=1, blocks=2, embed_dim=12, heads=2, window=4) if tiny else swinir()
        _MODELS[tiny] = {"unpatched": model,
                         "patched": swin_kernels.patch(copy.deepcopy(model), backend="auto")}
    return _MODELS[tiny]


@pytest.mark.parametrize("contender", ["unpatched", "patched"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_swinir(benchmark, precision, contender):
    tiny = benchmark.disabled
    models = _models(tiny)
    size = 16 if tiny else 64
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1))
    dtype = PRECISIONS[precision]

    def infer(model):
        autocast = torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            return model(image).float()

    blocks = [m for m in models["patched"].modules() if hasattr(m, "attn") and hasattr(m, "shift_size")]
    assert blocks and all(is_patched(b) for b in blocks)
    expected, got = infer(models["unpatched"]), infer(models["patched"])
    difference = ((got - expected).abs().max() / expected.abs().max()).item()
    assert difference <= RELATIVE_TOLERANCE[dtype or torch.float32], difference
    benchmark.group = f"end-to-end SwinIR x2 {size}x{size} eager inference {precision}"
    benchmark.extra_info.update(contender=contender)
    benchmark.pedantic(infer, args=(models[contender],), rounds=1 if tiny else 5, iterations=1)
