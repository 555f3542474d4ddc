"""FusedWindowAttention: a drop-in Swin attention branch on the (B, H, W, C) map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import functional
from .backends import BACKEND_NAMES
from .geometry import WindowGeometry, check_feature_map, check_window_sizes
from .reference import relative_position_bias, relative_position_index


class FusedWindowAttention(nn.Module):
    """Swin's W-MSA / SW-MSA branch: pad, roll, partition, attention, reverse, roll back and crop in one call.

    forward(x) takes the normed feature map (B, H, W, C), any H, W >= 1, and returns the attention branch
    (B, H, W, C), proj included. Parameters carry the official names (``qkv``, ``proj``,
    ``relative_position_bias_table``), so an official or timm WindowAttention state dict loads with
    ``strict=False``. A map not larger than the window is one unshifted window, as in the official block.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, shift_size: int = 0, qkv_bias: bool = True,
                 qk_scale: float | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 backend: str = "auto"):
        super().__init__()
        if dim < 1 or num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        check_window_sizes(window_size, shift_size)
        if backend != "auto" and backend not in BACKEND_NAMES:
            raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKEND_NAMES)} or 'auto'")
        self.dim, self.num_heads = dim, num_heads
        self.window_size, self.shift_size = window_size, shift_size
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.attn_drop, self.backend = attn_drop, backend
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, num_heads={self.num_heads}, window_size={self.window_size}, "
                f"shift_size={self.shift_size}, backend={self.backend!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, c = check_feature_map(x)
        if c != self.dim:
            raise ValueError(f"expected {self.dim} channels, got input of shape {tuple(x.shape)}")
        g = WindowGeometry.for_block(h, w, self.window_size, self.shift_size)
        qkv = F.linear(x, self.qkv.weight, self.qkv.bias)
        out = functional.shifted_window_attention(
            qkv, self.num_heads, g.window, g.shift,
            pad_qkv=None if self.qkv.bias is None else self.qkv.bias.to(qkv.dtype),
            bias=relative_position_bias(self.relative_position_bias_table, g.window,
                                        self.relative_position_index).to(qkv.dtype),
            scale=self.scale,
            dropout_p=self.attn_drop if self.training else 0.0,
            backend=self.backend,
        )
        return self.proj_drop(self.proj(out))

    @classmethod
    def from_window_attention(cls, module: nn.Module, shift_size: int = 0, backend: str = "auto"):
        """Build from an official/timm ``WindowAttention`` or an HF transformers ``SwinAttention`` (weights copied)."""
        from .weights import window_attention_weights

        spec = window_attention_weights(module)
        fused = cls(spec.dim, spec.num_heads, spec.window_size, shift_size, qkv_bias=spec.qkv_bias is not None,
                    qk_scale=spec.scale, attn_drop=spec.attn_drop, proj_drop=spec.proj_drop, backend=backend)
        fused = fused.to(device=spec.qkv_weight.device, dtype=spec.qkv_weight.dtype)
        with torch.no_grad():
            fused.qkv.weight.copy_(spec.qkv_weight)
            if spec.qkv_bias is not None:
                fused.qkv.bias.copy_(spec.qkv_bias)
            fused.proj.weight.copy_(spec.proj_weight)
            fused.proj.bias.copy_(spec.proj_bias)
            fused.relative_position_bias_table.copy_(spec.table)
        return fused.train(module.training)
