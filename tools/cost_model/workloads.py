"""The named workloads of the cost model: the shapes the library exists for."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Workload:
    """One attention call on a (batch, height, width) map, or with ``depth`` a (batch, depth, height, width) volume
    whose window and shift are then (depth, rows, columns)."""

    name: str
    batch: int
    height: int
    width: int
    channels: int
    heads: int
    window: tuple[int, ...]
    shift: tuple[int, ...]
    dtype: torch.dtype
    depth: int | None = None
    fp32_precision: str = "tf32x3"  # the dot products of fp32 inputs (configs.FP32_PRECISIONS)

    @property
    def sizes(self) -> tuple[int, ...]:
        """The spatial sizes: (H, W), or (D, H, W) of a volume."""
        return (self.height, self.width) if self.depth is None else (self.depth, self.height, self.width)

    @property
    def head_dim(self) -> int:
        return self.channels // self.heads

    @property
    def tokens(self) -> int:
        return math.prod(self.window)

    @property
    def map_tokens(self) -> int:
        return self.batch * math.prod(self.sizes)

    @property
    def windows(self) -> int:
        """Windows of the padded map or volume, over the batch."""
        return self.batch * math.prod(math.ceil(n / m) for n, m in zip(self.sizes, self.window))

    @property
    def element_bytes(self) -> int:
        return torch.finfo(self.dtype).bits // 8


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _swin_t(stage: int, shifted: bool, dtype: str, fp32_precision: str = "tf32x3") -> Workload:
    size, channels, heads = 56 >> (stage - 1), 96 << (stage - 1), 3 << (stage - 1)
    # stage 4's 7x7 map is one window: the official model (and HF) then drops the shift
    shift = 3 if shifted and size > 7 else 0
    name = f"swin-t s{stage} {'shift' if shift else 'noshift'} {dtype}"
    if dtype == "fp32" and fp32_precision != "tf32x3":  # the default precision goes unnamed
        name += f" {fp32_precision}"
    return Workload(name, 128, size, size, channels, heads, (7, 7), (shift, shift), _DTYPES[dtype],
                    fp32_precision=fp32_precision)


def largest_window() -> int:
    """The side of the largest square window the Triton backend accepts (read from its configs)."""
    from swin_kernels.ops.triton import configs

    return math.isqrt(configs.MAX_TOKENS)


def all_workloads() -> list[Workload]:
    out = []
    for dtype in ("bf16", "fp16"):
        for stage in (1, 2, 3, 4):
            for shifted in (False, True):
                if stage == 4 and shifted:
                    continue  # the same call as unshifted (see _swin_t)
                out.append(_swin_t(stage, shifted, dtype))
    # fp32 (issue 20): stage 1 at the default 3xTF32 (shifted and not: the measured fp32 row was unshifted), at
    # plain TF32 (torch's switch) and exact (SWIN_KERNELS_FP32=ieee), the path fp32 took before 3xTF32
    out += [_swin_t(1, False, "fp32"), _swin_t(1, True, "fp32"), _swin_t(1, True, "fp32", "tf32"),
            _swin_t(1, True, "fp32", "ieee")]
    out.append(Workload("swin-b 384 s1 shift bf16", 32, 96, 96, 128, 4, (12, 12), (6, 6), torch.bfloat16))
    out.append(Workload("swinir 64x64 bf16", 16, 64, 64, 180, 6, (8, 8), (4, 4), torch.bfloat16))
    out.append(Workload("window 16x16 bf16", 16, 64, 64, 128, 4, (16, 16), (8, 8), torch.bfloat16))
    m = largest_window()
    out.append(Workload(f"largest window {m}x{m} bf16", 16, 4 * m, 4 * m, 128, 4, (m, m), (m // 2, m // 2),
                        torch.bfloat16))
    out += volume_workloads()
    return out


def volume_workloads() -> list[Workload]:
    """Stage 1 of the 3-D models, one clip / volume.

    torchvision's swin3d_t: 16 frames at 224² give (8, 56, 56) tokens after the (2, 4, 4) patch embedding, C = 96,
    3 heads, window 8x7x7 shifted by 4x3x3; its per-axis rule makes the window the clip's 8 frames and the depth
    shift 0 (an axis not larger than its window is not shifted), so the shifted block runs shift (0, 3, 3).
    MONAI's SwinUNETR at a 96³ input: (48, 48, 48) tokens after the 2x patch embedding, C = 48, 3 heads, window
    7x7x7 shifted by 3x3x3 (48 is padded to 49 on every axis).
    """
    return [Workload("swin3d-t s1 shift bf16", 1, 56, 56, 96, 3, (8, 7, 7), (0, 3, 3), torch.bfloat16, depth=8),
            Workload("swinunetr 96 s1 shift bf16", 1, 48, 48, 48, 3, (7, 7, 7), (3, 3, 3), torch.bfloat16, depth=48)]


def headline() -> Workload:
    return _swin_t(1, True, "bf16")


def by_name(name: str) -> Workload:
    for w in all_workloads():
        if w.name == name:
            return w
    raise KeyError(f"no workload named {name!r}; known: {', '.join(w.name for w in all_workloads())}")
