"""A patched model under torch.compile: one graph (fullgraph=True), the eager result, no extra recompiles.

Dynamo's tracing is what patching can break, so most checks use the cheap "aot_eager" backend (dynamo plus
AOTAutograd, forward and backward, without code generation) or a graph-counting backend; one test compiles
for real with inductor. Emulated backends (Triton under TRITON_INTERPRET) are left out: too slow to trace.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo.testing
import transformers as tf

import swin_kernels

from swin_family_models import (
    ALL_CASES, NATIVE_BACKENDS, assert_close, assert_grads_close, backend_device, output_tensors, patch_or_skip,
    randomize_, run, swin_config,
)

CLASSIFIER = next(case for case in ALL_CASES if case.name == "SwinForImageClassification")
# Two resolutions: the second makes dynamo recompile with dynamic shapes.
SIZES = [(68, 52), (84, 76)]


def one_stage_classifier(device="cpu", heads=2) -> torch.nn.Module:
    """Two blocks (unshifted, shifted): enough to trace every patched path, cheap to compile."""
    config = swin_config(depths=[2], num_heads=[heads], num_labels=3)
    return randomize_(tf.SwinForImageClassification(config)).eval().to(device)


def pixels(size, batch=2, seed=0, device="cpu") -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(seed)).to(device)


class GraphCounter:
    """A dynamo backend that counts the graphs it is given and runs them eagerly."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, graph_module, example_inputs):
        self.graphs += 1
        return graph_module.forward


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("backend", NATIVE_BACKENDS)
def test_fullgraph_training_step_matches_eager(backend):
    """Forward and backward traced in one graph each (3 stages: padding, shifts and a clamped last stage)."""
    device = backend_device(backend)
    model = patch_or_skip(CLASSIFIER.model(torch.float32, device=device).train(), backend)
    inputs = CLASSIFIER.inputs(torch.float32, device=device)
    expected, expected_grads = run(model, inputs, grad=True)
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    actual, grads = run(torch.compile(model, fullgraph=True, backend=counter), inputs, grad=True)
    assert counter.frame_count == 1
    assert_close(actual, expected, torch.float32, "compiled outputs")
    assert_grads_close({k.removeprefix("_orig_mod."): v for k, v in grads.items()}, expected_grads, torch.float32,
                       "compiled")


def graphs_over_sizes(model, reference_model, device="cpu") -> int:
    """Graphs dynamo compiles for ``model`` over SIZES (fullgraph), each result checked against eager."""
    torch._dynamo.reset()
    counter = GraphCounter()
    compiled = torch.compile(model, fullgraph=True, backend=counter)
    with torch.no_grad():
        for size in SIZES:
            x = pixels(size, device=device)
            expected = reference_model(pixel_values=x).logits
            assert_close([compiled(pixel_values=x).logits], [expected], torch.float32, f"at {size}")
    return counter.graphs


@pytest.fixture(scope="module")
def unpatched_graphs() -> int:
    model = one_stage_classifier()
    return graphs_over_sizes(model, model)


# The reference backend's many small ops make dynamic-shape tracing slow; it is traced with fullgraph above and
# checked here only when it is the one native backend.
DYNAMIC_BACKENDS = [b for b in NATIVE_BACKENDS if b != "reference"] or NATIVE_BACKENDS


@pytest.mark.parametrize("backend", DYNAMIC_BACKENDS)
def test_dynamic_sizes_recompile_no_more_than_unpatched(backend, unpatched_graphs):
    device = backend_device(backend)
    model = one_stage_classifier(device)
    patched = patch_or_skip(copy.deepcopy(model), backend)
    assert graphs_over_sizes(patched, model, device) <= unpatched_graphs


def test_inductor_compiles_the_patched_model():
    model = one_stage_classifier()
    patched = swin_kernels.patch(copy.deepcopy(model))
    x = pixels(SIZES[0])
    with torch.no_grad():
        actual = torch.compile(patched, fullgraph=True)(pixel_values=x).logits
        expected = model(pixel_values=x).logits
    assert_close(output_tensors(actual), output_tensors(expected), torch.float32, "inductor")
