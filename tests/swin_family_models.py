"""Small, randomly initialised Swin-family models of Hugging Face transformers, for the patching tests.

Every case builds its model in a given dtype with fresh random values in every parameter (HF initialises bias
tables to zero and norms to one, which would hide mistakes), and an input whose size forces padding in every
stage and window clamping where the model clamps (HF's SwinLayer can run a clamped block only when the map's
smaller side equals the window).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch
import transformers as tf

import swin_kernels

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


def _emulated(backend: str) -> bool:
    """Triton kernels run by the interpreter on the CPU: correct but far too slow for every model."""
    return backend == "triton" and os.environ.get("TRITON_INTERPRET") == "1" and not torch.cuda.is_available()


NATIVE_BACKENDS = [b for b in swin_kernels.available_backends() if not _emulated(b)]
EMULATED_BACKENDS = [b for b in swin_kernels.available_backends() if _emulated(b)]


def backend_device(backend: str) -> torch.device:
    """Where a backend's tensors live: the GPU for cuda (and triton on a GPU), the CPU otherwise."""
    if backend == "cuda" or (backend == "triton" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def patch_or_skip(model: torch.nn.Module, backend: str) -> torch.nn.Module:
    """swin_kernels.patch(model, backend), or skip the test with the dispatcher's reason when the backend cannot
    run this model's blocks as they are (e.g. fp64 or head_dim 8 on cuda)."""
    try:
        return swin_kernels.patch(model, backend=backend)
    except swin_kernels.BackendUnavailableError as error:
        pytest.skip(str(error))

WINDOW = 4
# A 68x52 image with 4x4 patches gives maps 17x13 -> 9x7 -> 5x4: padded in every stage, and the last stage's
# smaller side equals the window (clamped to shift 0 by SwinLayer and DonutSwinLayer).
IMAGE = (68, 52)
# 52x44 -> 13x11 -> 7x6 -> 4x3: the last map is smaller than the window (MaskFormer and V2 pad it, unclamped).
SMALL_IMAGE = (52, 44)


def _common(**overrides):
    values = dict(image_size=64, patch_size=4, embed_dim=16, depths=[2, 2, 2], num_heads=[2, 2, 4],
                  window_size=WINDOW, drop_path_rate=0.0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    values.update(overrides)
    return values


def swin_config(**overrides):
    # sdpa keeps the softmax in the model's dtype (HF's eager path runs it in fp32 even for fp64)
    return tf.SwinConfig(**_common(**{"attn_implementation": "sdpa", **overrides}))


@dataclass(frozen=True)
class ModelCase:
    name: str
    build: Callable[[], torch.nn.Module]
    image: tuple[int, int] = IMAGE
    extra_inputs: Callable[[int, torch.Generator], dict] = field(default=lambda batch, gen: {})

    def __str__(self) -> str:
        return self.name

    def model(self, dtype: torch.dtype, seed: int = 0, device="cpu") -> torch.nn.Module:
        return randomize_(self.build(), seed).to(device=device, dtype=dtype)

    def inputs(self, dtype: torch.dtype, batch: int = 2, seed: int = 1, image=None, device="cpu") -> dict:
        gen = torch.Generator().manual_seed(seed)
        height, width = image or self.image
        pixels = torch.randn(batch, 3, height, width, generator=gen, dtype=torch.float64).to(dtype)
        inputs = {"pixel_values": pixels, **self.extra_inputs(batch, gen)}
        return {k: v.to(device) for k, v in inputs.items()}


# Masked image modeling needs a square image of the configured size (its decoder and loss assume it): window 3
# makes 16x16 -> 8x8 -> 4x4 padded in every stage instead.
MIM_IMAGE = (64, 64)


def _masked_positions(batch: int, gen: torch.Generator) -> dict:
    patches = (MIM_IMAGE[0] // 4) * (MIM_IMAGE[1] // 4)
    return {"bool_masked_pos": torch.rand(batch, patches, generator=gen) < 0.4}


def _v2(**overrides):
    return tf.Swinv2Config(**_common(**overrides))


V1_CASES = [
    ModelCase("SwinModel", lambda: tf.SwinModel(swin_config())),
    ModelCase("SwinForImageClassification", lambda: tf.SwinForImageClassification(swin_config(num_labels=5))),
    ModelCase("SwinForMaskedImageModeling",
              lambda: tf.SwinForMaskedImageModeling(swin_config(window_size=3, encoder_stride=16)),
              image=MIM_IMAGE, extra_inputs=_masked_positions),
    ModelCase("SwinBackbone",
              lambda: tf.SwinBackbone(swin_config(out_features=["stem", "stage1", "stage2", "stage3"]))),
    ModelCase("DonutSwinModel", lambda: tf.DonutSwinModel(tf.DonutSwinConfig(**_common()))),
    ModelCase("MaskFormerSwinModel", lambda: tf.MaskFormerSwinModel(tf.MaskFormerSwinConfig(**_common())),
              image=SMALL_IMAGE),
    ModelCase("MaskFormerSwinBackbone",
              lambda: tf.MaskFormerSwinBackbone(tf.MaskFormerSwinConfig(
                  **_common(out_features=["stage1", "stage2", "stage3"]))),
              image=SMALL_IMAGE),
]
V2_CASES = [
    ModelCase("Swinv2Model", lambda: tf.Swinv2Model(_v2()), image=SMALL_IMAGE),
    ModelCase("Swinv2ForImageClassification", lambda: tf.Swinv2ForImageClassification(_v2(num_labels=5))),
]
ALL_CASES = V1_CASES + V2_CASES


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Fresh random values in every parameter: unit-gain weights, norm scales near one, O(1) tables."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if name.endswith("logit_scale"):
                noise = torch.log(torch.full(p.shape, 10.0, dtype=torch.float64)) + 0.3 * noise
            elif p.dim() >= 2 and "relative_position_bias_table" not in name:
                noise = noise / (p[0].numel() ** 0.5)
            elif name.endswith("weight"):
                noise = 1.0 + 0.2 * noise
            else:
                noise = 0.5 * noise
            p.copy_(noise)
    return module


def output_tensors(output) -> list[torch.Tensor]:
    """Every floating-point tensor of a model output (ModelOutput, tuple or tensor), nested tuples flattened."""
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    values = output.to_tuple() if hasattr(output, "to_tuple") else output
    if isinstance(values, (tuple, list)):
        return [t for value in values for t in output_tensors(value)]
    return []


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest absolute difference over the largest magnitude of the expected tensor."""
    scale = expected.detach().double().abs().max().item()
    return (actual.detach().double() - expected.detach().double()).abs().max().item() / max(scale, 1e-300)


# ------------------------------------------------------------------------------------------- comparisons
def run(model, inputs, grad: bool):
    """Outputs of a forward (and, with grad, the input and parameter gradients of a fixed random loss)."""
    inputs = {k: v.clone().requires_grad_(grad and v.is_floating_point()) for k, v in inputs.items()}
    model.zero_grad(set_to_none=True)
    outputs = output_tensors(model(**inputs))
    if not grad:
        return outputs, None
    gen = torch.Generator().manual_seed(7)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t)).sum() for t in outputs)
    loss.backward()
    grads = {"pixel_values": inputs["pixel_values"].grad}
    grads.update({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    return outputs, grads


def assert_close(actual, expected, dtype, what):
    """Outputs: largest difference over the largest expected magnitude, per tensor."""
    tol = TOLERANCE[dtype]
    assert len(actual) == len(expected), f"{what}: {len(actual)} tensors, expected {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape, f"{what}[{i}]: shape {tuple(a.shape)}, expected {tuple(e.shape)}"
        error = relative_error(a, e)
        assert error <= tol, f"{what}[{i}]: relative error {error:.2e} > {tol:.0e}"


def _normwise(a, e) -> float:
    return ((a.double() - e.double()).norm() / e.double().norm().clamp_min(1e-300)).item()


# Gradients that are zero in exact arithmetic: a key bias adds the same q·b to every score of a softmax row.
ZERO_GRADIENTS = ("k_proj.bias", "attention.self.key.bias")


def assert_grads_close(grads, expected, dtype, what, truth=None):
    """Gradients: norm-wise relative error per tensor <= the dtype's tolerance.

    fp32 gradients that are sums over every token (biases, logit scales) cancel heavily, so two fp32
    implementations may differ by more than 1e-5 without either being wrong. With ``truth`` (the same model and
    inputs in fp64) a gradient also passes when its error against the truth is at most twice the unpatched
    model's own. Zero gradients (ZERO_GRADIENTS) must stay at rounding level in both.
    """
    tol = TOLERANCE[dtype]
    assert grads.keys() == expected.keys()
    largest = max(g.abs().max().item() for g in expected.values())
    for name, e in expected.items():
        a = grads[name]
        if name.endswith(ZERO_GRADIENTS):
            assert max(a.abs().max().item(), e.abs().max().item()) <= tol * largest, f"{what}: {name} not ~0"
            continue
        error = _normwise(a, e)
        if error <= tol:
            continue
        assert truth is not None, f"{what}: grad of {name}: relative error {error:.2e} > {tol:.0e}"
        own, ours = _normwise(e, truth[name]), _normwise(a, truth[name])
        assert ours <= 2 * own, (f"{what}: grad of {name}: relative error {error:.2e} > {tol:.0e}, and against "
                                 f"fp64 {ours:.2e} > twice the unpatched model's own {own:.2e}")


def compare_with_unpatched(case, backend, dtype, train=True):
    device = backend_device(backend)
    model = case.model(dtype, device=device).train(train)
    patched = patch_or_skip(copy.deepcopy(model), backend)
    inputs = case.inputs(dtype, device=device)
    expected, expected_grads = run(model, inputs, grad=True)
    actual, grads = run(patched, inputs, grad=True)
    assert_close(actual, expected, dtype, f"{case} outputs")
    truth = None
    if dtype == torch.float32:
        truth = run(copy.deepcopy(model).double(), {k: v.double() if v.is_floating_point() else v
                                                    for k, v in inputs.items()}, grad=True)[1]
    assert_grads_close(grads, expected_grads, dtype, str(case), truth)
