"""FusedWindowAttention: a drop-in Swin attention branch on the (B, H, W, C) map or (B, D, H, W, C) volume."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import backends, functional
from .geometry import (CLAMP_RULES, WindowGeometry, check_feature_map, check_window_sizes, clamp_volume_window,
                       clamp_window)
from .bias import relative_position_bias, relative_position_index


class FusedWindowAttention(nn.Module):
    """Swin's W-MSA / SW-MSA branch: pad, roll, partition, attention, reverse, roll back and crop in one call.

    forward(x) takes the normed feature map (B, H, W, C), any H, W >= 1, and returns the attention branch
    (B, H, W, C), proj included. Parameters carry the official names (``qkv``, ``proj``,
    ``relative_position_bias_table``), so an official or timm WindowAttention state dict loads with
    ``strict=False``.

    window_size, shift_size: an int or (rows, columns); 3 ints (depth, rows, columns) make it a 3-D (Video Swin,
    SwinUNETR) module whose forward takes (B, D, H, W, C). roll_before_pad: roll the map before padding it (timm's
    order) instead of after (official). window_clamp: how a map not larger than the window is handled
    (geometry.clamp_window): "official" (one unshifted window, square windows only), "per_axis" (timm),
    "shift_only" (torchvision) or "none"; 3-D modules default to "per_axis" (torchvision's swin3d, MONAI).
    """

    def __init__(self, dim: int, num_heads: int, window_size=7, shift_size=0, qkv_bias: bool = True,
                 qk_scale: float | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 backend: str = "auto", *, roll_before_pad: bool = False, window_clamp: str | None = None):
        """dim: channels C; num_heads: heads (C must be a multiple); window_size, shift_size: an int or (rows,
        columns), 0 <= shift < window. qkv_bias: a bias on the qkv Linear (padded tokens see it as their q/k/v);
        qk_scale: the score scale (default head_dim ** -0.5); attn_drop: attention dropout probability in training
        (backends without dropout decline it); proj_drop: dropout after proj. backend: "auto", "reference", "cpp",
        "triton" or "cuda" (a named backend that cannot run on this machine raises BackendUnavailableError here).
        roll_before_pad: roll, then pad (timm) instead of pad, then roll (official, HF, torchvision).
        window_clamp: what a map not larger than the window does: "official", "per_axis", "shift_only" or
        "none"; None picks "official" for a square window with equal shifts and "per_axis" otherwise.
        """
        super().__init__()
        if dim < 1 or num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        window, shift = check_window_sizes(window_size, shift_size)
        if window_clamp is None:
            square = len(window) == 2 and window[0] == window[1] and shift[0] == shift[1]
            window_clamp = "official" if square else "per_axis"
        if window_clamp not in CLAMP_RULES:
            raise ValueError(f"unknown window_clamp {window_clamp!r}; choose from {', '.join(CLAMP_RULES)}")
        self._clamp(tuple(m + 1 for m in window), window, shift, window_clamp)  # the rule accepts this window
        backends.check_name(backend)
        if backend != "auto" and backends.unavailable_reason(backend) is not None:
            raise backends.BackendUnavailableError(f"{backend}: {backends.unavailable_reason(backend)}")
        self.dim, self.num_heads = dim, num_heads
        self.window_size, self.shift_size = window, shift
        self.roll_before_pad, self.window_clamp = roll_before_pad, window_clamp
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.attn_drop, self.backend = attn_drop, backend
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        table_rows = 1
        for m in window:
            table_rows *= 2 * m - 1
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table_rows, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}, "
                f"shift_size={self.shift_size}, roll_before_pad={self.roll_before_pad}, "
                f"window_clamp={self.window_clamp!r}, backend={self.backend!r}")

    @staticmethod
    def _clamp(sizes, window, shift, rule):
        if len(window) == 3:
            return clamp_volume_window(sizes, window, shift, rule)
        return clamp_window(sizes[0], sizes[1], window, shift, rule)

    @property
    def volume(self) -> bool:
        """Whether this module attends over (D, H, W) volumes (a window of 3 ints)."""
        return len(self.window_size) == 3

    def geometry(self, *sizes: int) -> WindowGeometry:
        """The windows this module uses on a height x width map (depth x height x width volume), after its
        clamping rule."""
        window, shift = self._clamp(sizes, self.window_size, self.shift_size, self.window_clamp)
        return WindowGeometry.of(sizes, window, shift, self.roll_before_pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: the normed feature map (B, H, W, C), any H, W >= 1 (padded to whole windows inside, never copied);
        a 3-D module takes (B, D, H, W, C). Returns the attention branch of the same shape: qkv, window attention
        with the relative position bias and the shift mask, proj, every token back at its place. The window and
        shift come from ``geometry(*spatial sizes)``."""
        empty = isinstance(x, torch.Tensor) and x.dim() == (5 if self.volume else 4) and x.shape[0] == 0
        shape = check_feature_map(x.new_empty((1, *x.shape[1:])) if empty else x, volume=self.volume)
        c = shape[-1]
        if c != self.dim:
            raise ValueError(f"expected {self.dim} channels, got input of shape {tuple(x.shape)}")
        g = self.geometry(*shape[1:-1])
        qkv = F.linear(x, self.qkv.weight, self.qkv.bias)
        if empty:  # an empty batch: the empty result
            return self.proj_drop(self.proj(qkv[..., :c]))
        bias = relative_position_bias(self.relative_position_bias_table, g.window, self.relative_position_index,
                                      table_window=self.window_size)
        out = functional.shifted_window_attention(
            qkv, self.num_heads, g.window, g.shift, roll_before_pad=g.roll_before_pad,
            pad_qkv=None if self.qkv.bias is None else self.qkv.bias.to(qkv.dtype),
            bias=bias.to(qkv.dtype), scale=self.scale,
            dropout_p=self.attn_drop if self.training else 0.0,
            backend=self.backend,
        )
        return self.proj_drop(self.proj(out))

    @classmethod
    def from_window_attention(cls, module: nn.Module, shift_size=0, backend: str = "auto", **options):
        """Build from an official/timm ``WindowAttention`` or an HF transformers ``SwinAttention`` (weights copied).

        ``options`` (roll_before_pad, window_clamp) as for the constructor; a timm module gets timm's order.
        """
        from .weights import window_attention_weights

        spec = window_attention_weights(module)
        if type(module).__module__.startswith("timm."):
            options.setdefault("roll_before_pad", True)
            options.setdefault("window_clamp", "per_axis")
        fused = cls(spec.dim, spec.num_heads, spec.window_size, shift_size, qkv_bias=spec.qkv_bias is not None,
                    qk_scale=spec.scale, attn_drop=spec.attn_drop, proj_drop=spec.proj_drop, backend=backend,
                    **options)
        fused = fused.to(device=spec.qkv_weight.device, dtype=spec.qkv_weight.dtype)
        with torch.no_grad():
            fused.qkv.weight.copy_(spec.qkv_weight)
            if spec.qkv_bias is not None:
                fused.qkv.bias.copy_(spec.qkv_bias)
            fused.proj.weight.copy_(spec.proj_weight)
            fused.proj.bias.copy_(spec.proj_bias)
            fused.relative_position_bias_table.copy_(spec.table)
        return fused.train(module.training)
