"""Small, randomly initialised timm and torchvision Swin models (V1 and V2), for the patching tests.

Every case builds its model with fresh random values in every parameter (swin_family_models.randomize_: V2
logit scales near ln 10, non-zero q/v biases, random CPB MLPs and bias tables) and in timm V2's key-bias
buffer (a zero buffer timm adds to k; under cosine attention it changes the result, so it must be read, not
assumed zero), and an input that makes every stage pad, with shifted blocks and rectangular windows or the
family's window clamping.

Stage maps (patch 4, two stages; stage 2 halves the map, rounding up):
* 36x52 image: 9x13 -> 5x7; with window (4, 6) both stages pad and shift by (2, 3);
* 16x40 image: 4x10 -> 2x5. timm clamps per axis at construction (a 28x100 image at window 7, scaled
  down): window 4 becomes (4, 4) shift (0, 2), then (2, 4) shift (0, 2). torchvision keeps window (4, 6) and
  zeroes the shift of an axis not larger than it: shift (0, 3), then (0, 0) on a 2x5 map padded to 4x6.
  With timm's always_partition the window (6, 4) stays and the shift (3, 2) too: the rows of a 4- or 2-row
  map roll modulo their length, then pad to 6.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import timm
import torch
from torchvision.models import swin_transformer as tv

from swin_family_models import output_tensors, randomize_

TIMM_BLOCKS = ("SwinTransformerBlock", "SwinTransformerV2Block")
TORCHVISION_BLOCKS = ("ShiftedWindowAttention", "ShiftedWindowAttentionV2")
FAMILIES = ("timm V1", "timm V2", "torchvision V1", "torchvision V2")
TIMM_NAMES = {"timm V1": "swin_tiny_patch4_window7_224", "timm V2": "swinv2_tiny_window8_256"}

PADDED = (36, 52)
CLAMPED = (16, 40)


def timm_model(family: str, image=PADDED, window=(4, 6), embed_dim=16, depths=(2, 2), heads=(2, 4), **kwargs):
    """timm.create_model of a small swin_* / swinv2_* model without pretrained weights or stochastic depth."""
    return timm.create_model(TIMM_NAMES[family], pretrained=False, img_size=image, embed_dim=embed_dim,
                             depths=depths, num_heads=heads, window_size=window, drop_path_rate=0.0,
                             **({"num_classes": 5} | kwargs))


def torchvision_model(family: str, window=(4, 6), embed_dim=16, depths=(2, 2), heads=(2, 4), **kwargs):
    """torchvision's SwinTransformer (V1, or V2 with its block and patch merging) with small dims."""
    v2 = dict(block=tv.SwinTransformerBlockV2, downsample_layer=tv.PatchMergingV2) if family.endswith("V2") else {}
    return tv.SwinTransformer(patch_size=[4, 4], embed_dim=embed_dim, depths=list(depths), num_heads=list(heads),
                              window_size=list(window), stochastic_depth_prob=0.0, num_classes=5, **v2, **kwargs)


def randomize_buffers_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """timm V2's key bias (a buffer) random too."""
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("attn.k_bias"):
                buffer.copy_(0.5 * torch.randn(buffer.shape, generator=gen, dtype=torch.float64))
    return model


@dataclass(frozen=True)
class Case:
    name: str
    family: str
    build: Callable[[], torch.nn.Module]
    image: tuple[int, int] = PADDED

    def __str__(self) -> str:
        return self.name

    def model(self, dtype: torch.dtype, seed: int = 0, device="cpu") -> torch.nn.Module:
        return randomize_buffers_(randomize_(self.build(), seed), seed).to(device=device, dtype=dtype)

    def inputs(self, dtype: torch.dtype, batch: int = 2, seed: int = 1, image=None, device="cpu") -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, 3, *(image or self.image), generator=gen, dtype=torch.float64)
        return x.to(device=device, dtype=dtype)


def _timm(family, **kwargs):
    return lambda: timm_model(family, **kwargs)


def _torchvision(family, **kwargs):
    return lambda: torchvision_model(family, **kwargs)


CASES = [
    Case("timm V1 classifier, window (4, 6)", "timm V1", _timm("timm V1")),
    Case("timm V1 features_only, per-axis clamp", "timm V1",
         _timm("timm V1", image=CLAMPED, window=4, features_only=True), image=CLAMPED),
    # built for 40x40 (maps 10x10, 5x5), run at 36x52: the mask is built per call for each padded map
    Case("timm V1 strict_img_size=False", "timm V1", _timm("timm V1", image=(40, 40), window=4,
                                                           strict_img_size=False)),
    Case("timm V1 always_partition, window (6, 4)", "timm V1",
         _timm("timm V1", image=CLAMPED, window=(6, 4), always_partition=True), image=CLAMPED),
    Case("timm V2 classifier, window (4, 6)", "timm V2", _timm("timm V2")),
    Case("timm V2 features_only, per-axis clamp", "timm V2",
         _timm("timm V2", image=CLAMPED, window=4, features_only=True), image=CLAMPED),
    Case("timm V2 strict_img_size=False, always_partition", "timm V2",
         _timm("timm V2", image=(32, 32), window=(6, 4), strict_img_size=False, always_partition=True)),
    Case("torchvision V1, window [4, 6]", "torchvision V1", _torchvision("torchvision V1")),
    Case("torchvision V1, shift zeroed per axis", "torchvision V1", _torchvision("torchvision V1"), image=CLAMPED),
    Case("torchvision V2, window [4, 6]", "torchvision V2", _torchvision("torchvision V2")),
    Case("torchvision V2, shift zeroed per axis", "torchvision V2", _torchvision("torchvision V2"), image=CLAMPED),
]
BY_NAME = {case.name: case for case in CASES}

# For backends run by an emulator (Triton under TRITON_INTERPRET), and the compile and export tests: one stage
# of two blocks with one head on a 5x6 map, window (3, 4) (padded to 6x8, shifted by (1, 2)).
TINY = {
    family: Case(f"tiny {family}", family,
                 _timm(family, image=(20, 24), window=(3, 4), embed_dim=8, depths=(2,), heads=(1,))
                 if family.startswith("timm") else
                 _torchvision(family, window=(3, 4), embed_dim=8, depths=(2,), heads=(1,)), image=(20, 24))
    for family in FAMILIES
}


def attention_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules swin_kernels.patch replaces a method of: timm's blocks, torchvision's attention modules."""
    return [m for m in model.modules()
            if (type(m).__name__ in TIMM_BLOCKS and type(m).__module__.startswith("timm."))
            or (type(m).__name__ in TORCHVISION_BLOCKS and type(m).__module__.startswith("torchvision."))]


def run(model, x: torch.Tensor, grad: bool):
    """Outputs of a forward (and, with grad, the input and parameter gradients of a fixed random loss)."""
    x = x.clone().requires_grad_(grad)
    model.zero_grad(set_to_none=True)
    outputs = output_tensors(model(x))
    if not grad:
        return outputs, None
    gen = torch.Generator().manual_seed(7)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t)).sum() for t in outputs)
    loss.backward()
    grads = {"input": x.grad}
    grads.update({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    return outputs, grads
