"""The named workloads of the cost model: the shapes the library exists for."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Workload:
    name: str
    batch: int
    height: int
    width: int
    channels: int
    heads: int
    window: tuple[int, int]
    shift: tuple[int, int]
    dtype: torch.dtype

    @property
    def head_dim(self) -> int:
        return self.channels // self.heads

    @property
    def tokens(self) -> int:
        return self.window[0] * self.window[1]

    @property
    def map_tokens(self) -> int:
        return self.batch * self.height * self.width

    @property
    def windows(self) -> int:
        """Windows of the padded map, over the batch."""
        mh, mw = self.window
        return self.batch * math.ceil(self.height / mh) * math.ceil(self.width / mw)

    @property
    def element_bytes(self) -> int:
        return torch.finfo(self.dtype).bits // 8


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _swin_t(stage: int, shifted: bool, dtype: str) -> Workload:
    size, channels, heads = 56 >> (stage - 1), 96 << (stage - 1), 3 << (stage - 1)
    # stage 4's 7x7 map is one window: the official model (and HF) then drops the shift
    shift = 3 if shifted and size > 7 else 0
    return Workload(f"swin-t s{stage} {'shift' if shift else 'noshift'} {dtype}", 128, size, size, channels, heads,
                    (7, 7), (shift, shift), _DTYPES[dtype])


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
    out.append(Workload("swin-b 384 s1 shift bf16", 32, 96, 96, 128, 4, (12, 12), (6, 6), torch.bfloat16))
    out.append(Workload("swinir 64x64 bf16", 16, 64, 64, 180, 6, (8, 8), (4, 4), torch.bfloat16))
    m = largest_window()
    out.append(Workload(f"largest window {m}x{m} bf16", 16, 4 * m, 4 * m, 128, 4, (m, m), (m // 2, m // 2),
                        torch.bfloat16))
    return out


def headline() -> Workload:
    return _swin_t(1, True, "bf16")


def by_name(name: str) -> Workload:
    for w in all_workloads():
        if w.name == name:
            return w
    raise KeyError(f"no workload named {name!r}; known: {', '.join(w.name for w in all_workloads())}")
