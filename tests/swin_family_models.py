"""Small, randomly initialised Swin-family models of Hugging Face transformers, for the patching tests.

Every case builds its model in a given dtype with fresh random values in every parameter (HF initialises bias
tables to zero and norms to one, which would hide mistakes), and an input whose size forces padding in every
stage and window clamping where the model clamps (HF's SwinLayer can run a clamped block only when the map's
smaller side equals the window).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import transformers as tf

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

    def model(self, dtype: torch.dtype, seed: int = 0) -> torch.nn.Module:
        return randomize_(self.build(), seed).to(dtype)

    def inputs(self, dtype: torch.dtype, batch: int = 2, seed: int = 1, image=None) -> dict:
        gen = torch.Generator().manual_seed(seed)
        height, width = image or self.image
        pixels = torch.randn(batch, 3, height, width, generator=gen, dtype=torch.float64).to(dtype)
        return {"pixel_values": pixels, **self.extra_inputs(batch, gen)}


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
