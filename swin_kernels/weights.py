"""Read the weights of the window-attention modules people use, whatever their layout.

Supported: the official / timm ``WindowAttention`` (fused ``qkv``, ``proj``), HF transformers ``SwinAttention``
of the 4.x layout (``self.query/key/value``, ``output.dense``) and of the 5.x layout (``q_proj/k_proj/v_proj``,
``o_proj``, ``relative_position_bias``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class AttentionWeights:
    dim: int
    num_heads: int
    window_size: tuple[int, int]
    scale: float
    qkv_weight: torch.Tensor  # (3C, C), rows [q | k | v]
    qkv_bias: torch.Tensor | None  # (3C,)
    proj_weight: torch.Tensor
    proj_bias: torch.Tensor
    table: torch.Tensor  # ((2Mh-1)(2Mw-1), heads)
    attn_drop: float = 0.0
    proj_drop: float = 0.0


def window_pair(window) -> tuple[int, int]:
    """A window given as an int, a (h, w) pair or a tensor of two elements, as a pair of ints."""
    if isinstance(window, torch.Tensor):
        window = window.tolist()
    if isinstance(window, (tuple, list)):
        return int(window[0]), int(window[1])
    return int(window), int(window)


def _dropout_p(dropout) -> float:
    return float(dropout.p if isinstance(dropout, nn.Dropout) else dropout or 0.0)


def _concat_qkv(q: nn.Linear, k: nn.Linear, v: nn.Linear):
    weight = torch.cat([q.weight, k.weight, v.weight], dim=0)
    bias = None if q.bias is None else torch.cat([q.bias, k.bias, v.bias], dim=0)
    return weight, bias


def window_attention_weights(module: nn.Module) -> AttentionWeights:
    """Weights and hyper-parameters of an official/timm/HF window-attention module."""
    if hasattr(module, "qkv") and hasattr(module, "relative_position_bias_table"):  # official / timm
        heads = module.num_heads
        if module.qkv.out_features != 3 * module.qkv.in_features:
            raise ValueError(f"{type(module).__name__} projects {module.qkv.in_features} channels to "
                             f"{module.qkv.out_features // 3} per q/k/v (timm's head_dim option); "
                             "FusedWindowAttention keeps the channel count")
        return AttentionWeights(
            dim=module.qkv.in_features, num_heads=heads, window_size=window_pair(module.window_size),
            scale=float(module.scale), qkv_weight=module.qkv.weight.detach(),
            qkv_bias=None if module.qkv.bias is None else module.qkv.bias.detach(),
            proj_weight=module.proj.weight.detach(), proj_bias=module.proj.bias.detach(),
            table=module.relative_position_bias_table.detach(),
            attn_drop=_dropout_p(getattr(module, "attn_drop", 0.0)),
            proj_drop=_dropout_p(getattr(module, "proj_drop", 0.0)),
        )
    if hasattr(module, "q_proj") and hasattr(module, "relative_position_bias"):  # HF transformers 5.x
        weight, bias = _concat_qkv(module.q_proj, module.k_proj, module.v_proj)
        rpb = module.relative_position_bias
        return AttentionWeights(
            dim=module.q_proj.in_features, num_heads=module.num_attention_heads,
            window_size=window_pair(rpb.window_size), scale=float(module.scaling),
            qkv_weight=weight.detach(), qkv_bias=None if bias is None else bias.detach(),
            proj_weight=module.o_proj.weight.detach(), proj_bias=module.o_proj.bias.detach(),
            table=rpb.relative_position_bias_table.detach(), attn_drop=float(module.attention_dropout),
        )
    if hasattr(module, "self") and hasattr(module.self, "query"):  # HF transformers 4.x
        attn = module.self
        weight, bias = _concat_qkv(attn.query, attn.key, attn.value)
        return AttentionWeights(
            dim=attn.query.in_features, num_heads=attn.num_attention_heads,
            window_size=window_pair(attn.window_size), scale=attn.attention_head_size**-0.5,
            qkv_weight=weight.detach(), qkv_bias=None if bias is None else bias.detach(),
            proj_weight=module.output.dense.weight.detach(), proj_bias=module.output.dense.bias.detach(),
            table=attn.relative_position_bias_table.detach(), attn_drop=_dropout_p(attn.dropout),
            proj_drop=_dropout_p(module.output.dropout),
        )
    raise TypeError(f"{type(module).__name__} is not a recognised Swin window-attention module")
