"""pytest-benchmark: whole Swin-T classifiers (HF transformers, timm, torchvision) patched by swin_kernels.patch
against unpatched.

Inference and a training step at 224x224, eager and compiled (see benchmarks/end_to_end.py). Under
--benchmark-disable (make test) a tiny Swin of each library runs each pass once, its compiled mode traced with
"aot_eager": the patched model must still agree with the unpatched one.
"""

from __future__ import annotations

import pytest
import torch

from .end_to_end import CONTENDERS, LIBRARIES, MODES, PASSES, Setting, prepare_pass, spec_for
from .harness import RELATIVE_TOLERANCE
from .memory import peak_bytes

_PREPARED = {}  # (tiny, library, mode, pass, precision) -> PreparedPass, shared by both contenders (same weights)
# the CPU measures fp32 and bf16 autocast (eager); a GPU always runs bf16 autocast
PRECISIONS = {"fp32": None} if torch.cuda.is_available() else {"fp32": None, "bf16 autocast": torch.bfloat16}


def prepared(tiny: bool, library: str, mode: str, pass_name: str, autocast):
    key = (tiny, library, mode, pass_name, autocast)
    if key not in _PREPARED:
        _PREPARED.clear()  # one pair of models alive at a time
        setting = Setting.for_run(full=False, tiny=tiny, autocast=autocast)
        _PREPARED[key] = setting, prepare_pass(spec_for(library, tiny), pass_name, setting, mode)
    return _PREPARED[key]


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_end_to_end(benchmark, precision, library, mode, pass_name, contender):
    tiny = benchmark.disabled
    if PRECISIONS[precision] is not None and (mode == "compiled" or tiny):
        pytest.skip("the CPU's bf16 autocast rows are timed eager and not in quick mode (compiling a Swin-T takes "
                    "minutes per pass; tests/test_autocast.py checks patched models under bf16 autocast)")
    setting, ready = prepared(tiny, library, mode, pass_name, PRECISIONS[precision])
    tolerance = RELATIVE_TOLERANCE[setting.autocast or torch.float32]
    assert ready.difference <= tolerance, f"patched differs from unpatched by {ready.difference:.2e}"
    spec = spec_for(library, tiny)
    benchmark.group = f"end-to-end {spec.name} {mode} {pass_name} B{ready.batch} {setting.precision}"
    call = ready.calls[contender]
    benchmark.extra_info.update(contender=contender, batch=ready.batch,
                                peak_bytes=peak_bytes(call, ready.args, setting.device))
    benchmark.pedantic(call, args=ready.args, rounds=setting.rounds[pass_name], iterations=1)
    if benchmark.enabled:
        benchmark.extra_info["images_per_s"] = ready.batch / benchmark.stats.stats.median
