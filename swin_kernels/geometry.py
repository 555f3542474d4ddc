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

A volume ``(D, H, W)`` (video frames, medical volumes) adds a leading depth axis with its own window ``Md`` and
shift ``sd``, treated exactly like the other two: windows row-major over (planes, rows, columns) of the grid, tokens
row-major over (depth, row, column) inside a window, up to 27 shift regions. A map is the volume of depth 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Additive mask value the official implementation puts between tokens of different shift regions.
SHIFT_MASK_VALUE = -100.0

Pair = tuple[int, int]
Sizes = tuple[int, ...]  # one entry per spatial axis: (rows, columns) of a map, (depth, rows, columns) of a volume


def as_sizes(value, count: int, name: str) -> Sizes:
    """An int (the same on every axis) or ``count`` ints, as a tuple of ``count`` ints."""
    what = "an int or a pair of ints" if count == 2 else f"an int or {count} ints"
    if isinstance(value, bool):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if isinstance(value, int):
        return (value,) * count
    if isinstance(value, (tuple, list, torch.Size)) and len(value) == count and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(int(v) for v in value)
    raise TypeError(f"{name} must be {what}, got {value!r}")


def as_pair(value, name: str) -> Pair:
    """An int, or a pair of ints, as (rows, columns)."""
    if isinstance(value, bool) or not isinstance(value, (int, tuple, list, torch.Size)) or (
            not isinstance(value, int) and len(value) != 2):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return as_sizes(value, 2, name)  # type: ignore[return-value]


_AXIS_NAMES = {2: ("rows", "columns"), 3: ("depth", "rows", "columns")}


def spatial_dims(*values) -> int:
    """3 if any of the windows / shifts given is a triple, else 2: the spatial axes they describe."""
    if any(isinstance(v, (tuple, list, torch.Size)) and len(v) == 3 for v in values):
        return 3
    return 2


def check_window_sizes(window, shift, dims: int | None = None) -> tuple[Sizes, Sizes]:
    """(window, shift) as tuples of ``dims`` ints (2, or 3 for a volume; by default what ``window`` says) with
    window >= 1 and 0 <= shift < window on each axis."""
    dims = spatial_dims(window, shift) if dims is None else dims
    if dims not in _AXIS_NAMES:
        raise ValueError(f"windows have 2 (rows, columns) or 3 (depth, rows, columns) axes, got {dims}")
    window, shift = as_sizes(window, dims, "window_size"), as_sizes(shift, dims, "shift_size")
    if min(window) < 1:
        raise ValueError(f"window_size must be >= 1 on each axis, got {window}")
    for axis, m, s in zip(_AXIS_NAMES[dims], window, shift):
        if not 0 <= s < m:
            raise ValueError(f"shift_size must satisfy 0 <= shift < window on each axis, got shift {s} and window "
                             f"{m} along the {axis}")
    return window, shift


def _padded(length: int, window: int) -> int:
    return -(-length // window) * window


def _product(values) -> int:
    result = 1
    for v in values:
        result = result * v
    return result


@dataclass(frozen=True)
class WindowGeometry:
    """The windows of one call on an ``height x width`` map, or a ``depth x height x width`` volume.

    ``window`` and ``shift``: pairs (rows, columns) for a map; for a volume (``depth`` given) triples (depth, rows,
    columns), and an int means the same on every axis. A map is the volume of depth 1 with window and shift 1 and 0
    along the depth: the ``*3`` properties give every geometry in that 3-axis form, which the kernels take.
    """

    height: int
    width: int
    window: Sizes
    shift: Sizes
    roll_before_pad: bool = False
    depth: int | None = None

    def __post_init__(self) -> None:
        dims = 2 if self.depth is None else 3
        window, shift = check_window_sizes(self.window, self.shift, dims)
        if window != self.window or shift != self.shift or type(self.window) is not tuple:  # ints given
            object.__setattr__(self, "window", window)
            object.__setattr__(self, "shift", shift)
        if not isinstance(self.roll_before_pad, bool):
            raise TypeError(f"roll_before_pad must be a bool, got {self.roll_before_pad!r}")
        if self.height < 1 or self.width < 1 or (self.depth is not None and self.depth < 1):
            # sizes may be symbolic under torch.compile: no isinstance check
            raise ValueError(f"feature map must be at least 1x1 (1x1x1 for a volume), got "
                             f"{'x'.join(map(str, self.sizes))}")
        # derived sizes, read many times per call by the launchers: computed once (not fields: eq/hash ignore them)
        padded = tuple(_padded(n, m) for n, m in zip(self.sizes, self.window))
        object.__setattr__(self, "_padded_sizes", padded)
        object.__setattr__(self, "_window_grid", tuple(p // m for p, m in zip(padded, self.window)))

    @classmethod
    def of(cls, sizes, window, shift=0, roll_before_pad: bool = False) -> "WindowGeometry":
        """From spatial sizes (H, W) or (D, H, W)."""
        sizes = tuple(sizes)
        if len(sizes) == 3:
            return cls(sizes[1], sizes[2], window, shift, roll_before_pad, depth=sizes[0])
        if len(sizes) != 2:
            raise ValueError(f"spatial sizes must be (H, W) or (D, H, W), got {sizes}")
        return cls(sizes[0], sizes[1], window, shift, roll_before_pad)

    # ------------------------------------------------------------------------------------------- sizes
    @property
    def dims(self) -> int:
        """2 for a map, 3 for a volume."""
        return 2 if self.depth is None else 3

    @property
    def sizes(self) -> Sizes:
        """(H, W) or (D, H, W)."""
        return (self.height, self.width) if self.depth is None else (self.depth, self.height, self.width)

    @property
    def padded_sizes(self) -> Sizes:
        return self._padded_sizes

    @property
    def window_grid(self) -> Sizes:
        """Windows along each axis."""
        return self._window_grid

    @property
    def has_padding(self) -> bool:
        return self.padded_sizes != self.sizes

    @property
    def padded_height(self) -> int:
        return _padded(self.height, self.window[-2])

    @property
    def padded_width(self) -> int:
        return _padded(self.width, self.window[-1])

    @property
    def pad_bottom(self) -> int:
        return self.padded_height - self.height

    @property
    def pad_right(self) -> int:
        return self.padded_width - self.width

    @property
    def windows_per_column(self) -> int:
        """Rows of windows (in one plane of windows for a volume)."""
        return self.padded_height // self.window[-2]

    @property
    def windows_per_row(self) -> int:
        return self.padded_width // self.window[-1]

    @property
    def windows_per_plane(self) -> int:
        """Windows of one plane of windows: all of them for a map."""
        return self.windows_per_column * self.windows_per_row

    @property
    def num_windows(self) -> int:
        return _product(self.window_grid)

    @property
    def tokens(self) -> int:
        return _product(self.window)

    @property
    def shifted(self) -> bool:
        return any(s != 0 for s in self.shift)

    # ------------------------------------------------------------------------------------ the roll
    @property
    def roll_length(self) -> Sizes:
        """Positions the cyclic roll acts on per axis: the padded map, or the unpadded one (roll before pad)."""
        return self.sizes if self.roll_before_pad else self.padded_sizes

    @property
    def roll(self) -> Sizes:
        """The roll per axis reduced modulo its length (torch.roll's shift, taken modulo the size)."""
        return tuple(s % n for s, n in zip(self.shift, self.roll_length))

    # -------------------------------------------------- every geometry as a volume: what the kernels take
    def _as3(self, values: Sizes, depth_value: int) -> Sizes:
        return values if self.depth is not None else (depth_value, *values)

    @property
    def sizes3(self) -> Sizes:
        return self._as3(self.sizes, 1)

    @property
    def window3(self) -> Sizes:
        return self._as3(self.window, 1)

    @property
    def shift3(self) -> Sizes:
        return self._as3(self.shift, 0)

    @property
    def roll_length3(self) -> Sizes:
        return self._as3(self.roll_length, 1)

    @property
    def roll3(self) -> Sizes:
        return self._as3(self.roll, 0)


def check_feature_map(x: torch.Tensor, name: str = "x", volume: bool = False) -> tuple[int, ...]:
    """A (B, H, W, C) feature map (``volume``: a (B, D, H, W, C) one) with every size >= 1 and a floating dtype."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != (5 if volume else 4):
        expected = "(B, D, H, W, C)" if volume else "(B, H, W, C)"
        hint = ""
        if x.dim() == 5 and not volume:
            hint = "; a (B, D, H, W, C) volume needs a window and shift of 3 ints (depth, rows, columns)"
        elif x.dim() == 4 and volume:
            hint = "; a (B, H, W, C) map needs a window and shift of 1 or 2 ints"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}{hint}")
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


def clamp_volume_window(sizes, window, shift, rule: str = "per_axis") -> tuple[Sizes, Sizes]:
    """(window, shift) a 3-D block uses on a (D, H, W) volume: rules "per_axis" (torchvision's swin3d, MONAI,
    Video Swin: an axis not larger than its window takes the axis's size and shift 0), "shift_only" or "none"."""
    window, shift = check_window_sizes(window, shift, 3)
    if rule == "official":
        raise ValueError("the official clamping rule is for 2-D maps; volumes use 'per_axis', 'shift_only' or 'none'")
    if rule == "per_axis":
        clamped = tuple(min(r, m) for r, m in zip(sizes, window))
        return clamped, tuple(0 if r <= m else s for r, m, s in zip(sizes, clamped, shift))
    if rule == "shift_only":
        return window, tuple(0 if r <= m else s for r, m, s in zip(sizes, window, shift))
    if rule == "none":
        return window, shift
    raise ValueError(f"unknown clamping rule {rule!r}; choose from {', '.join(CLAMP_RULES)}")


def clamp_window(height: int, width: int, window, shift, rule: str = "official") -> tuple[Pair, Pair]:
    """(window, shift) a block uses on an ``height x width`` map under one of CLAMP_RULES.

    official   (Swin's code, HF transformers; square windows): a map whose smaller side is not larger than the
               window is one unshifted window of that side.
    per_axis   (timm): on an axis whose size is not larger than the window, the window becomes that size and the
               shift 0.
    shift_only (torchvision): the window stays; the shift of an axis whose size is not larger than the window is 0.
    none       the window and shift as given.
    """
    window, shift = check_window_sizes(window, shift, 2)
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
