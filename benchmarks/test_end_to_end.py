"""pytest-benchmark: a whole Swin-T classifier patched by swin_kernels.patch against unpatched.

Inference and a training step at 224x224 (see benchmarks/end_to_end.py). Under --benchmark-disable (make test)
a tiny Swin runs each pass once: the patched model must still agree with the unpatched one.
"""

from __future__ import annotations

import pytest
import torch

from .end_to_end import CONTENDERS, PASSES, SWIN_T, TINY, Setting, prepare_pass
from .harness import RELATIVE_TOLERANCE
from .memory import peak_bytes

_PREPARED = {}  # (tiny, pass) -> PreparedPass, shared by both contenders so they start from the same weights


def prepared(tiny: bool, pass_name: str):
    if (tiny, pass_name) not in _PREPARED:
        _PREPARED.clear()  # one pair of models alive at a time
        setting = Setting.for_run(full=False, tiny=tiny)
        _PREPARED[(tiny, pass_name)] = setting, prepare_pass(TINY if tiny else SWIN_T, pass_name, setting)
    return _PREPARED[(tiny, pass_name)]


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("pass_name", PASSES)
def test_end_to_end(benchmark, pass_name, contender):
    tiny = benchmark.disabled
    setting, ready = prepared(tiny, pass_name)
    tolerance = RELATIVE_TOLERANCE[setting.autocast or torch.float32]
    assert ready.difference <= tolerance, f"patched differs from unpatched by {ready.difference:.2e}"
    spec = TINY if tiny else SWIN_T
    benchmark.group = f"end-to-end {spec.name} {pass_name} B{ready.batch} {setting.precision}"
    call = ready.calls[contender]
    benchmark.extra_info.update(contender=contender, batch=ready.batch,
                                peak_bytes=peak_bytes(call, ready.args, setting.device))
    benchmark.pedantic(call, args=ready.args, rounds=setting.rounds[pass_name], iterations=1)
    if benchmark.enabled:
        benchmark.extra_info["images_per_s"] = ready.batch / benchmark.stats.stats.median
