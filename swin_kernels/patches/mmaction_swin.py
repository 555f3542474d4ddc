"""OpenMMLab's Video Swin: mmaction2's SwinTransformerBlock3D (``mmaction.models.backbones.swin``, SwinTransformer3D).

The block has MONAI's layout and semantics (both come from the Video Swin Transformer code): ``forward_part1(x,
mask_matrix)`` is norm1 and the attention branch on the (B, D, H, W, C) volume; ``attn`` (WindowAttention3D) holds
qkv, proj, the relative position table and index, ``scale`` (qk_scale or head_dim^-0.5). ``get_window_size``
clamps per axis against the unpadded volume (an axis not larger than its window: window = its size, shift 0); the
volume is padded at the far end of every axis, then rolled; a clamped window of n tokens is biased with
``table[relative_position_index[:n, :n]]``; the shift mask is the one its BasicLayer built (``compute_mask``,
cached per size by the library). The patch replaces ``forward_part1`` with monai_swin's replacement; mmaction2's
``forward`` (residual, DropPath, MLP, ``with_cp`` checkpointing through ``self.forward_part1``) stays.
"""

from __future__ import annotations

from . import monai_swin
from .common import AttentionSpec

NAME = "mmaction2 Video Swin (SwinTransformerBlock3D)"
CLASS_NAMES = ("SwinTransformerBlock3D",)
MODULE_PREFIX = "mmaction."
REPLACES = "forward_part1"


def replacement(block, x, mask_matrix):
    """Patched forward_part1: (B, D, H, W, C) -> the attention branch (B, D, H, W, C), norm1 first, proj included."""
    return monai_swin.replacement(block, x, mask_matrix)


def unsupported_reason(block) -> str | None:
    window = getattr(block, "window_size", None)
    if window is not None and len(window) != 3:
        return f"its window {window!r} is not a (depth, rows, columns) triple"
    return monai_swin.unsupported_reason(block)


def prepare(block) -> None:
    monai_swin.prepare(block)


def attention_spec(block) -> AttentionSpec:
    return monai_swin.attention_spec(block)
