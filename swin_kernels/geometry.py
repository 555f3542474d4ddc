"""Window geometry of one (shifted) window-attention call, and the validation every entry point shares.

All backends address the same windows: the map ``(H, W)`` is zero-padded at the bottom/right to
``(Hp, Wp)`` (multiples of the window ``M``), rolled by ``(-s, -s)`` and cut into ``nW = (Hp/M)·(Wp/M)``
windows of ``N = M²`` tokens, numbered row-major over the window grid, tokens row-major inside a window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Additive mask value the official implementation puts between tokens of different shift regions.
SHIFT_MASK_VALUE = -100.0


@dataclass(frozen=True)
class WindowGeometry:
    height: int
    width: int
    window: int
    shift: int

    def __post_init__(self) -> None:
        check_window_sizes(self.window, self.shift)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"feature map must be at least 1x1, got {self.height}x{self.width}")

    @classmethod
    def for_block(cls, height: int, width: int, window: int, shift: int) -> "WindowGeometry":
        """The official block's clamping: a map not larger than the window is one window, unshifted."""
        check_window_sizes(window, shift)
        if min(height, width) <= window:
            window, shift = min(height, width), 0
        return cls(height, width, window, shift)

    @property
    def pad_bottom(self) -> int:
        return (self.window - self.height % self.window) % self.window

    @property
    def pad_right(self) -> int:
        return (self.window - self.width % self.window) % self.window

    @property
    def padded_height(self) -> int:
        return self.height + self.pad_bottom

    @property
    def padded_width(self) -> int:
        return self.width + self.pad_right

    @property
    def windows_per_column(self) -> int:
        return self.padded_height // self.window

    @property
    def windows_per_row(self) -> int:
        return self.padded_width // self.window

    @property
    def num_windows(self) -> int:
        return self.windows_per_column * self.windows_per_row

    @property
    def tokens(self) -> int:
        return self.window * self.window


def check_window_sizes(window: int, shift: int) -> None:
    if not isinstance(window, int) or not isinstance(shift, int):
        raise TypeError(f"window_size and shift_size must be ints, got {type(window).__name__}, {type(shift).__name__}")
    if window < 1:
        raise ValueError(f"window_size must be >= 1, got {window}")
    if not 0 <= shift < window:
        raise ValueError(f"shift_size must satisfy 0 <= shift_size < window_size, got shift {shift}, window {window}")


def check_feature_map(x: torch.Tensor, name: str = "x") -> tuple[int, int, int, int]:
    """A (B, H, W, C) feature map with B, H, W, C >= 1 and a floating dtype."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, H, W, C), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if min(x.shape) < 1:
        raise ValueError(f"{name} has an empty dimension: {tuple(x.shape)}")
    return tuple(x.shape)  # type: ignore[return-value]


def check_same_device_dtype(reference: torch.Tensor, name: str, other: torch.Tensor | None) -> None:
    if other is None:
        return
    if other.device != reference.device:
        raise ValueError(f"{name} is on {other.device} but the input is on {reference.device}")
    if other.dtype != reference.dtype:
        raise TypeError(f"{name} has dtype {other.dtype} but the input has {reference.dtype}")
