"""Window geometry of one (shifted) window-attention call, and the validation every entry point shares.

All backends address the same windows. A map ``(H, W)`` is cut into windows of ``(Mh, Mw)`` tokens after a cyclic
roll by ``(-sh, -sw)`` and zero padding at the bottom/right to ``(Hp, Wp)``, multiples of the window; windows are
numbered row-major over the window grid, tokens row-major inside a window. Two orders exist:

* pad, then roll (official code, HF transformers, torchvision): the padded ``Hp x Wp`` map is rolled, so the token
  at rolled position ``(r, c)`` is padded-map pixel ``((r + sh) mod Hp, (c + sw) mod Wp)`` — padding when that is
  outside ``H x W``;
* roll, then pad (timm): the ``H x W`` map is rolled and then padded, so positions ``r < H, c < W`` hold
  ``((r + sh) mod H, (c + sw) mod W)`` and rows ``>= H`` / columns ``>= W`` are padding.

Both are one map: along an axis of padded length ``P``, the roll acts on the first ``L`` positions (``L = P`` or the
unpadded length) by ``roll = s mod L``. The shift mask's regions are laid out on the padded grid in both orders:
``[0, P - M)``, ``[P - M, P - s)``, ``[P - s, P)``; an axis with ``s = 0`` has one region.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Additive mask value the official implementation puts between tokens of different shift regions.
SHIFT_MASK_VALUE = -100.0

Pair = tuple[int, int]


def as_pair(value, name: str) -> Pair:
    """An int, or a pair of ints, as (rows, columns)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list, torch.Size)) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def check_window_sizes(window, shift) -> tuple[Pair, Pair]:
    """(window, shift) as pairs with window >= 1 and 0 <= shift < window on each axis."""
    window, shift = as_pair(window, "window_size"), as_pair(shift, "shift_size")
    if min(window) < 1:
        raise ValueError(f"window_size must be >= 1 on each axis, got {window}")
    for axis, m, s in (("rows", window[0], shift[0]), ("columns", window[1], shift[1])):
        if not 0 <= s < m:
            raise ValueError(f"shift_size must satisfy 0 <= shift < window on each axis, got shift {s} and window "
                             f"{m} along the {axis}")
    return window, shift


def _padded(length: int, window: int) -> int:
    return -(-length // window) * window


@dataclass(frozen=True)
class WindowGeometry:
    height: int
    width: int
    window: Pair
    shift: Pair
    roll_before_pad: bool = False

    def __post_init__(self) -> None:
        window, shift = check_window_sizes(self.window, self.shift)
        if window != self.window or shift != self.shift or type(self.window) is not tuple:  # ints given
            object.__setattr__(self, "window", window)
            object.__setattr__(self, "shift", shift)
        if not isinstance(self.roll_before_pad, bool):
            raise TypeError(f"roll_before_pad must be a bool, got {self.roll_before_pad!r}")
        if self.height < 1 or self.width < 1:  # sizes may be symbolic under torch.compile: no isinstance check
            raise ValueError(f"feature map must be at least 1x1, got {self.height}x{self.width}")

    # ------------------------------------------------------------------------------------------- sizes
    @property
    def padded_height(self) -> int:
        return _padded(self.height, self.window[0])

    @property
    def padded_width(self) -> int:
        return _padded(self.width, self.window[1])

    @property
    def pad_bottom(self) -> int:
        return self.padded_height - self.height

    @property
    def pad_right(self) -> int:
        return self.padded_width - self.width

    @property
    def windows_per_column(self) -> int:
        return self.padded_height // self.window[0]

    @property
    def windows_per_row(self) -> int:
        return self.padded_width // self.window[1]

    @property
    def num_windows(self) -> int:
        return self.windows_per_column * self.windows_per_row

    @property
    def tokens(self) -> int:
        return self.window[0] * self.window[1]

    @property
    def shifted(self) -> bool:
        return self.shift != (0, 0)

    # ------------------------------------------------------------------------------------ the roll
    @property
    def roll_length(self) -> Pair:
        """Positions the cyclic roll acts on per axis: the padded map, or the unpadded one (roll before pad)."""
        if self.roll_before_pad:
            return self.height, self.width
        return self.padded_height, self.padded_width

    @property
    def roll(self) -> Pair:
        """The roll per axis reduced modulo its length (torch.roll's shift, taken modulo the size)."""
        length = self.roll_length
        return self.shift[0] % length[0], self.shift[1] % length[1]

    def kernel_args(self) -> tuple[int, ...]:
        """(height, width, padded_h, padded_w, roll_len_h, roll_len_w, roll_h, roll_w, shift_h, shift_w,
        windows_per_row, windows_per_image): the sizes every kernel's index map takes."""
        return (self.height, self.width, self.padded_height, self.padded_width, *self.roll_length, *self.roll,
                *self.shift, self.windows_per_row, self.num_windows)


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


# ------------------------------------------------------------------------------------------ clamping rules
# Each family decides, from the map and its configured window, the geometry a block really uses.
CLAMP_RULES = ("official", "per_axis", "shift_only", "none")


def clamp_window(height: int, width: int, window, shift, rule: str = "official") -> tuple[Pair, Pair]:
    """(window, shift) a block uses on an ``height x width`` map under one of CLAMP_RULES.

    official   (Swin's code, HF transformers; square windows): a map whose smaller side is not larger than the
               window is one unshifted window of that side.
    per_axis   (timm): on an axis whose size is not larger than the window, the window becomes that size and the
               shift 0.
    shift_only (torchvision): the window stays; the shift of an axis whose size is not larger than the window is 0.
    none       the window and shift as given.
    """
    window, shift = check_window_sizes(window, shift)
    if rule == "official":
        if window[0] != window[1] or shift[0] != shift[1]:
            raise ValueError(f"the official clamping rule is for square windows and shifts, got window {window}, "
                             f"shift {shift}")
        if min(height, width) <= window[0]:
            side = min(height, width)
            return (side, side), (0, 0)
        return window, shift
    if rule == "per_axis":
        sizes = (height, width)
        clamped = tuple(min(r, m) for r, m in zip(sizes, window))
        return clamped, tuple(0 if r <= m else s for r, m, s in zip(sizes, clamped, shift))  # type: ignore
    if rule == "shift_only":
        return window, tuple(0 if r <= m else s for r, m, s in zip((height, width), window, shift))  # type: ignore
    if rule == "none":
        return window, shift
    raise ValueError(f"unknown clamping rule {rule!r}; choose from {', '.join(CLAMP_RULES)}")
