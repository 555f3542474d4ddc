"""The feature-map shapes Swin's attention runs on: stages 1-4 of Swin-T/S/B, plus 384² and detection sizes.

Swin-S has Swin-T's widths, heads and window (only its stage-3 depth differs), so their attention calls are
the same shapes and share one label. Windows and shifts are stored after the official block's clamping
(a map not larger than the window is one unshifted window), so core and branch contenders run the same call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from swin_kernels.geometry import WindowGeometry, clamp_window

# model label -> (embed dim, heads per stage)
MODELS = {"Swin-T/S": (96, (3, 6, 12, 24)), "Swin-B": (128, (4, 8, 16, 32))}
PATCH = 4


@dataclass(frozen=True)
class BenchShape:
    model: str
    stage: int
    image: str  # input image size the stage belongs to, e.g. "224" or "800x1216"
    batch: int
    height: int
    width: int
    channels: int
    heads: int
    window: int
    shift: int

    @property
    def head_dim(self) -> int:
        return self.channels // self.heads

    @property
    def tokens(self) -> int:
        return self.height * self.width

    @property
    def geometry(self) -> WindowGeometry:
        return WindowGeometry(self.height, self.width, self.window, self.shift)

    @property
    def label(self) -> str:
        return (f"{self.model} stage{self.stage} ({self.image}) B{self.batch} {self.height}x{self.width} "
                f"C{self.channels} h{self.heads} M{self.window} shift{self.shift}")

    @property
    def short_id(self) -> str:
        model = self.model.replace("/", "").replace("Swin-", "")
        return f"{model}{self.stage}-{self.image}-B{self.batch}-M{self.window}s{self.shift}"


def stage_shape(model: str, stage: int, image: tuple[int, int], batch: int, window: int, shifted: bool) -> BenchShape:
    """The attention call of one block of ``stage`` (1-based) for an ``image`` input, clamped like the block."""
    dim, heads = MODELS[model]
    scale = PATCH * 2 ** (stage - 1)
    height, width = -(-image[0] // scale), -(-image[1] // scale)  # patch embedding and merging pad (ceil)
    (window, _), (shift, _) = clamp_window(height, width, window, window // 2 if shifted else 0, "official")
    label = str(image[0]) if image[0] == image[1] else f"{image[0]}x{image[1]}"
    return BenchShape(model, stage, label, batch, height, width, dim * 2 ** (stage - 1), heads[stage - 1],
                      window, shift)


def _stages(model, image, batch, window, stages=(1, 2, 3, 4)) -> list[BenchShape]:
    shapes = []
    for stage in stages:
        for shifted in (False, True):
            shape = stage_shape(model, stage, image, batch, window, shifted)
            if shape not in shapes:  # clamped stages have no shifted variant
                shapes.append(shape)
    return shapes


def swin_t_stage1(batch: int = 8) -> list[BenchShape]:
    """Swin-T stage 1 at 224², unshifted and shifted: the row every backend is compared on first."""
    return _stages("Swin-T/S", (224, 224), batch, 7, stages=(1,))


def quick_shapes() -> list[BenchShape]:
    """One small but real call (Swin-T stage 3 at batch 1, shifted), for runs that only check nothing rotted."""
    return [stage_shape("Swin-T/S", 3, (224, 224), 1, 7, shifted=True)]


def standard_shapes(device: torch.device) -> list[BenchShape]:
    """Stages 1-4 of Swin-T/S and Swin-B at 224²; on a GPU also Swin-B 384² (window 12) and detection 800x1216."""
    if device.type != "cuda":
        return _stages("Swin-T/S", (224, 224), 8, 7) + _stages("Swin-B", (224, 224), 8, 7)
    return (_stages("Swin-T/S", (224, 224), 32, 7) + _stages("Swin-B", (224, 224), 32, 7)
            + _stages("Swin-B", (384, 384), 8, 12) + _stages("Swin-T/S", (800, 1216), 2, 7))


def dtypes_for(device: torch.device) -> list[torch.dtype]:
    """The mixed-precision types Swin trains and serves in, and on the CPU fp32 first (its usual dtype there)."""
    return [torch.bfloat16, torch.float16] if device.type == "cuda" else [torch.float32, torch.bfloat16, torch.float16]


def bench_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
