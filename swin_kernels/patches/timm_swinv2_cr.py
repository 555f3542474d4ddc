"""timm's SwinTransformerV2CrBlock (swinv2_cr_* models): Swin V2 as Christoph Rist wrote it for timm.

The patch replaces the block's ``_shifted_window_attn(x)`` ((B, H, W, C) -> (B, H, W, C), proj included) and
leaves its ``forward`` (post-norm residuals, MLP, extra norm) to timm. Semantics:

* roll, then pad (timm's order, ``roll_before_pad=True``); window and shift fixed at construction per axis from
  ``feat_size`` (an axis not larger than the window gets window = its size and shift 0, unless
  ``always_partition``); nothing is clamped per call;
* cosine attention: cos(q, k)·exp(min(logit_scale_h, ln 100)), applied to the unpartitioned qkv map
  (hf_swinv2.cosine_qkv); the qkv Linear's own bias, k's included (not zeroed, unlike the other V2 codes);
* the position bias is the attention's meta MLP on log-spaced relative coordinates, used as it comes out
  (no 16·sigmoid): timm's own ``_relative_positional_encodings()``, so its MLP dropout in training is timm's;
* the shift mask: static (built for ``feat_size`` rounded up to window multiples) or, with ``dynamic_mask``, per
  call. The fused op builds the mask of the actual map; where a static mask was built for another padded size,
  timm's own code runs (it would apply that mask as it stands, or fail), so its result stays timm's.
"""

from __future__ import annotations

import torch

from ..geometry import WindowGeometry
from ..weights import window_pair
from .common import (
    AttentionSpec, hooks_reason, named_backend_lacks_dropout, original, plain_linear_reason,
    window_attention_branch,
)
from .hf_swinv2 import cosine_qkv

NAME = "timm Swin V2-CR"
CLASS_NAMES = ("SwinTransformerV2CrBlock",)
MODULE_PREFIX = "timm.models."
REPLACES = "_shifted_window_attn"


def _geometry(block, height: int, width: int) -> WindowGeometry:
    return WindowGeometry(height, width, window_pair(block.window_size), window_pair(block.shift_size), True)


def _static_mask_fits(block, g: WindowGeometry) -> bool:
    if not g.shifted or getattr(block, "dynamic_mask", False):
        return True
    if getattr(block, "attn_mask", None) is None:
        return False
    rows, cols = window_pair(block.feat_size)
    static = WindowGeometry(rows, cols, g.window, g.shift, True)
    return (static.padded_height, static.padded_width) == (g.padded_height, g.padded_width)


def _dropout(block) -> float:
    return float(block.attn.attn_drop.p) if block.training else 0.0


def replacement(block, x: torch.Tensor) -> torch.Tensor:
    _, height, width, _ = x.shape
    g = _geometry(block, height, width)
    spec = attention_spec(block)
    if not _static_mask_fits(block, g) or named_backend_lacks_dropout(
            block._swin_kernels_backend, x, g.window, spec.head_dim, _dropout(block)):
        return original(block, "_shifted_window_attn", x)
    attn = block.attn
    bias = attn._relative_positional_encodings()[0]  # (heads, N, N)
    out = window_attention_branch(
        x, attn.qkv.weight, attn.qkv.bias, bias, attn.num_heads, g.window, g.shift, 1.0, _dropout(block),
        block._swin_kernels_backend,
        qkv_transform=lambda t, in_place: cosine_qkv(t, attn.num_heads, attn.logit_scale, in_place),
        roll_before_pad=True)
    return attn.proj_drop(attn.proj(out))


def unsupported_reason(block) -> str | None:
    attn = getattr(block, "attn", None)
    needed = ("qkv", "proj", "proj_drop", "attn_drop", "num_heads", "logit_scale", "meta_mlp",
              "_relative_positional_encodings")
    if attn is None or not all(hasattr(attn, name) for name in needed):
        return "its attention does not have timm's WindowMultiHeadAttention (V2-CR) layout"
    if not all(hasattr(block, name) for name in ("window_size", "shift_size", "feat_size")):
        return "it has no window_size / shift_size / feat_size"
    if window_pair(attn.window_size) != window_pair(block.window_size):
        return f"its attention window {attn.window_size} differs from the block window {block.window_size}"
    if attn.qkv.out_features != 3 * attn.qkv.in_features:
        return "its qkv does not project to 3 x its channels"
    return plain_linear_reason(qkv=attn.qkv, proj=attn.proj) or hooks_reason(attn=attn, qkv=attn.qkv)


def prepare(block) -> None:
    pass


def attention_spec(block) -> AttentionSpec:
    attn = block.attn
    heads = attn.num_heads
    return AttentionSpec(heads, attn.qkv.weight.shape[0] // (3 * heads), window_pair(block.window_size),
                         float(attn.attn_drop.p), attn.qkv.weight)
