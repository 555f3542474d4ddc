"""Reference Swin modules in plain PyTorch, official structure and parameter names.

WindowAttention works on partitioned windows like the official code; the block does
norm -> pad -> roll -> partition -> W-MSA -> reverse -> roll back -> crop -> residual -> norm -> MLP -> residual.
"""

from __future__ import annotations

import torch
from torch import nn

from . import reference as ref
from .geometry import WindowGeometry, check_window_sizes, clamp_window


class DropPath(nn.Module):
    """Stochastic depth: zero a whole sample's residual branch with probability p, scale the rest by 1/(1-p)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class WindowAttention(nn.Module):
    """W-MSA on partitioned windows (B·nW, N, C), relative position bias from a ((2M-1)², heads) table."""

    def __init__(self, dim, window_size, num_heads, qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", ref.relative_position_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None = None, window: int | None = None):
        window = self.window_size if window is None else window
        q, k, v = ref.split_heads(self.qkv(windows), self.num_heads)
        bias = ref.relative_position_bias(self.relative_position_bias_table, window, self.relative_position_index)
        dropout_p = self.attn_drop if self.training else 0.0
        out = ref.attention_core(q, k, v, bias, self.scale, dropout_p, mask)
        return self.proj_drop(self.proj(ref.merge_heads(out)))


class SwinTransformerBlock(nn.Module):
    """One Swin block on a (B, H, W, C) map; windows are clamped per call as the official block does."""

    def __init__(self, dim, num_heads, window_size=7, shift_size=0, mlp_ratio=4.0, qkv_bias=True, qk_scale=None,
                 drop=0.0, attn_drop=0.0, drop_path=0.0, layer_norm_eps=1e-5):
        super().__init__()
        check_window_sizes(window_size, shift_size)
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def attention_branch(self, x: torch.Tensor) -> torch.Tensor:
        """norm1(x) of shape (B, H, W, C) -> the W-MSA/SW-MSA output at the same positions."""
        _, h, w, _ = x.shape
        window, shift = clamp_window(h, w, self.window_size, self.shift_size, "official")
        g = WindowGeometry(h, w, window, shift)
        windows = ref.window_partition(x, g.window, g.shift)
        mask = ref.shift_attention_mask(g, dtype=x.dtype, device=x.device)
        return ref.window_reverse(self.attn(windows, mask, g.window), g.window, h, w, g.shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attention_branch(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """(B, H, W, C) -> (B, ⌈H/2⌉, ⌈W/2⌉, 2C): pad to even, concatenate each 2x2 neighbourhood, norm, reduce."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        x = nn.functional.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """`depth` blocks alternating W-MSA and SW-MSA (shift M//2), then an optional patch merging."""

    def __init__(self, dim, depth, num_heads, window_size=7, downsample=True, drop_path=0.0, **block_kwargs):
        super().__init__()
        rates = drop_path if isinstance(drop_path, (list, tuple)) else [drop_path] * depth
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else window_size // 2,
                                 drop_path=rates[i], **block_kwargs)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class SwinTransformer(nn.Module):
    """Patch embedding (input padded to the patch size) -> stages -> norm -> mean pool -> head."""

    def __init__(self, in_chans=3, patch_size=4, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                 window_size=7, mlp_ratio=4.0, qkv_bias=True, num_classes=1000, layer_norm_eps=1e-5):
        super().__init__()
        self.patch_size = patch_size
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.patch_norm = nn.LayerNorm(embed_dim)
        self.stages = nn.ModuleList(
            SwinStage(embed_dim * 2**i, depth, num_heads[i], window_size, downsample=i < len(depths) - 1,
                      mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, layer_norm_eps=layer_norm_eps)
            for i, depth in enumerate(depths)
        )
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features, eps=layer_norm_eps)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, h, w, C) after the final norm."""
        h, w = images.shape[-2:]
        p = self.patch_size
        images = nn.functional.pad(images, (0, (p - w % p) % p, 0, (p - h % p) % p))
        x = self.patch_norm(self.patch_embed(images).permute(0, 2, 3, 1))
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(images).mean(dim=(1, 2)))
