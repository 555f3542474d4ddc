"""No silent fall-back: 'auto' warns once per reason when it runs the unfused reference, explain() answers for a call,
a module and a model, and patch(backend=...) checks at patch time what it can."""

from __future__ import annotations

import warnings

import pytest
import torch

import swin_kernels
from swin_kernels import backends
from swin_kernels.backends import FallbackWarning, Request

from swin_family_models import ALL_CASES

CLASSIFIER = next(case for case in ALL_CASES if case.name == "SwinForImageClassification")
FUSED_CPU = [b for b in backends.AUTO_ORDER["cpu"] if b != "reference" and b in swin_kernels.available_backends()]
needs_fused_cpu = pytest.mark.skipif(not FUSED_CPU, reason="no fused backend runs CPU tensors in this build")


@pytest.fixture(autouse=True)
def fresh_warnings():
    backends._WARNED.clear()
    yield
    backends._WARNED.clear()


def _dropout_call(dropout_p=0.2):
    """A call the fused CPU kernels decline (they have no attention dropout): auto must run the reference."""
    qkv = torch.randn(1, 8, 8, 48)
    return lambda: swin_kernels.shifted_window_attention(qkv, 2, 4, 2, dropout_p=dropout_p)


@needs_fused_cpu
def test_fallback_to_the_reference_warns_once_per_reason():
    call = _dropout_call()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
        call()
    messages = [str(w.message) for w in caught if issubclass(w.category, FallbackWarning)]
    assert len(messages) == 1, messages
    assert "unfused reference" in messages[0] and f"{FUSED_CPU[0]} declined" in messages[0]
    assert "dropout" in messages[0]


@needs_fused_cpu
def test_no_warning_when_a_fused_backend_runs_or_the_reference_is_asked_for():
    qkv = torch.randn(1, 8, 8, 48)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        swin_kernels.shifted_window_attention(qkv, 2, 4, 2)
        swin_kernels.shifted_window_attention(qkv, 2, 4, 2, dropout_p=0.2, backend="reference")


def test_explain_a_call():
    qkv = torch.randn(1, 8, 8, 48)
    answer = swin_kernels.explain(swin_kernels.shifted_window_attention, qkv, 2, 4, 2)
    assert answer.backend == backends.choose("auto", answer.request, warn=False)[0]
    assert answer.request.head_dim == 8 and answer.request.window == (4, 4)
    assert set(answer.reasons) == set(backends.BACKEND_NAMES)
    text = str(answer)
    assert f"runs on {answer.backend}" in text
    for name, why in answer.reasons.items():
        if name != answer.backend:
            assert name in text and (why is None or why in text)
    partition = swin_kernels.explain(swin_kernels.window_partition, qkv, (4, 2), backend="reference")
    assert partition.backend == "reference" and partition.request.op == "partition"


@needs_fused_cpu
def test_explain_says_why_the_reference_runs():
    answer = swin_kernels.explain(swin_kernels.shifted_window_attention, torch.randn(1, 8, 8, 48), 2, 4,
                                  dropout_p=0.1)
    assert answer.backend == "reference" and "every fused backend declined" in str(answer)
    assert "dropout" in answer.reasons[FUSED_CPU[0]]


def test_explain_a_module_with_and_without_input():
    module = swin_kernels.FusedWindowAttention(32, 2, 7, 3)
    configured = swin_kernels.explain(module)
    assert configured.request.window == (7, 7)
    small = swin_kernels.explain(module, torch.randn(1, 5, 9, 32))
    assert small.request.window == (5, 5)  # the official clamping of a 5x9 map
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert swin_kernels.explain(module).request.dtype == torch.bfloat16


def test_explain_a_model_patched_or_not():
    model = CLASSIFIER.model(torch.float32)
    before = swin_kernels.explain(model)
    blocks = [m for m in model.modules() if type(m).__name__ == "SwinLayer"]
    assert len(before.blocks) == len(blocks)
    assert all(e.backend is None and "not patched" in e.note for _, e in before.blocks)
    swin_kernels.patch(model, backend="reference")
    after = swin_kernels.explain(model)
    assert after.backends_used() == {"reference": len(blocks)}
    assert f"{len(blocks)} block(s): runs on reference" in str(after)


@needs_fused_cpu
def test_patch_time_check_of_a_named_backend():
    """A named backend that cannot run the weights as they are (here: on another device) fails at patch time,
    naming the block and the reason, and patches nothing."""
    model = CLASSIFIER.model(torch.float32).to("meta")
    name = FUSED_CPU[0]
    assert backends.reason(name, Request("attention", torch.device("meta"), torch.float32, (4, 4), 8))
    with pytest.raises(swin_kernels.BackendUnavailableError, match=f"^{name} cannot run SwinLayer .* meta"):
        swin_kernels.patch(model, backend=name)
    assert not any("_swin_kernels_backend" in vars(m) for m in model.modules())
