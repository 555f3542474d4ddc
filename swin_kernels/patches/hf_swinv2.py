"""Hugging Face transformers Swin V2 blocks (Swinv2Layer): cosine attention with a continuous position bias.

Swin V2 scores are ``cos(q_i, k_j) · exp(min(logit_scale_h, ln 100)) + 16·sigmoid(cpb_mlp(coords))[h, i, j]``.
The cosine normalisation and the per-head logit scale act on each token and head separately, so they are
applied to the unpartitioned qkv map (and to the qkv bias, which padded tokens see) before the fused op, which
then runs with scale 1 and the dense bias computed once per call. Every backend thereby supports V2. The q/k/v
projections are read or called per call (common.project), as in V1.

Blocks keep the post-norm order of V2 (attention, then layernorm_before, then the residual). Windows are the
block's own (fixed at construction from the configured resolution; a smaller run-time map is padded).

One difference from transformers: its Swinv2SelfAttention adds the shift mask twice (-200 between regions),
the official Swin V2 code and the fused op add it once (-100). A cross-region pair then weighs e^-100 instead of
e^-200 of a pair with the same score, which is below fp32 and fp64 resolution unless cosine logits within one
window differ by more than about 60 (only reachable with logit scales above 30).
"""

from __future__ import annotations

import math

import torch

from ..geometry import WindowGeometry
from ..weights import window_pair
from .common import (
    AttentionSpec, attend, bypassed_hooks_reason, call_options, dropout_reason, extra_arg_names, original, project,
    run_own_code_warning,
)

NAME = "Hugging Face transformers Swin V2"
CLASS_NAMES = ("Swinv2Layer", "Swin2SRLayer")
MODULE_PREFIX = "transformers.models."
REPLACES = "forward"
MAX_LOGIT_SCALE = math.log(1.0 / 0.01)


def cosine_qkv(qkv: torch.Tensor, num_heads: int, logit_scale: torch.Tensor, in_place: bool = False) -> torch.Tensor:
    """[q | k | v] -> [normalize(q)·scale_h | normalize(k) | v], per head, for any leading shape.

    Swin V2's cosine attention (official code, HF, timm, torchvision): scores normalize(q)·normalize(k)ᵀ times
    exp(min(logit_scale_h, ln 100)). Both factors act per token and head, so they are applied to the qkv map
    before the fused op, which then runs with scale 1.

    ``in_place``: overwrite q and k of ``qkv`` (a tensor the caller owns, no gradient through it) with one multiply
    by scale / |row|: no copy of the map (on a GPU the out-of-place form moves about 5x the map's bytes).
    """
    channels = qkv.shape[-1] // 3
    qk = qkv.narrow(-1, 0, 2 * channels).unflatten(-1, (2 * num_heads, -1))  # q heads, then k heads
    wide = torch.float64 if qkv.dtype == torch.float64 else torch.float32  # norms and factors at least in fp32
    scale = torch.clamp(logit_scale, max=MAX_LOGIT_SCALE).exp().reshape(num_heads, 1).to(wide)
    factors = torch.cat([scale, torch.ones_like(scale)])  # scale_h on q heads, 1 on k heads
    norms = torch.linalg.vector_norm(qk, dim=-1, keepdim=True, dtype=wide).clamp_min(1e-12)  # F.normalize's eps
    if in_place:
        qk.mul_(factors / norms)  # one rounding into qkv's dtype
        return qkv
    scaled = qk / norms * factors  # normalised first: the logit scale's gradient sums normalize(q)·dq as unpatched
    return torch.cat([scaled.to(qkv.dtype).flatten(-2), qkv.narrow(-1, 2 * channels, channels)], dim=-1)


def continuous_position_bias(mlp, coords_table: torch.Tensor, index: torch.Tensor, num_heads: int,
                             tokens: int) -> torch.Tensor:
    """Dense (heads, N, N) bias: 16·sigmoid of the CPB MLP on the coordinate table, gathered per token pair."""
    table = 16 * torch.sigmoid(mlp(coords_table).view(-1, num_heads))
    return table.index_select(0, index.view(-1)).view(tokens, tokens, -1).permute(2, 0, 1)


def _called_modules(layer):
    """Every module under ``attention`` the fused path calls."""
    s, o = layer.attention.self, layer.attention.output
    return (s.query, s.key, s.value, s.continuous_position_bias_mlp, o.dense, o.dropout)


def _attention(layer, x):
    s, o = layer.attention.self, layer.attention.output
    height, width = x.shape[1:3]
    g = WindowGeometry(height, width, layer.window_size, layer.shift_size)
    qkv, pad_qkv = project(x, (s.query, s.key, s.value), g)  # always a new tensor: one F.linear or a cat
    out = attend(
        qkv, pad_qkv, continuous_position_bias(s.continuous_position_bias_mlp, s.relative_coords_table,
                                               s.relative_position_index, s.num_attention_heads,
                                               s.window_size[0] * s.window_size[1]),
        s.num_attention_heads, g, 1.0, s.dropout.p if layer.training else 0.0,
        layer._swin_kernels_backend,
        qkv_transform=lambda t, in_place: cosine_qkv(t, s.num_attention_heads, s.logit_scale, in_place),
        owned_qkv=True,
    )
    return o.dropout(o.dense(out))


def _block(layer, hidden_states, input_dimensions, **_):
    height, width = input_dimensions
    batch, _, channels = hidden_states.size()
    attention = _attention(layer, hidden_states.view(batch, height, width, channels))
    hidden_states = hidden_states + layer.drop_path(layer.layernorm_before(attention.view(batch, height * width, channels)))
    layer_output = layer.output(layer.intermediate(hidden_states))
    return (hidden_states + layer.drop_path(layer.layernorm_after(layer_output)),)


def replacement(self, hidden_states, input_dimensions, *args, **kwargs):
    """Patched forward of a Swinv2Layer; same signature and outputs as the original."""
    options = call_options(self, args, kwargs)
    if options.get("output_attentions") or options.get("head_mask") is not None:
        return original(self, "forward", hidden_states, input_dimensions, *args, **kwargs)
    reason = fallback_reason(self, hidden_states)
    if reason is not None:
        run_own_code_warning(self, reason)
        return original(self, "forward", hidden_states, input_dimensions, *args, **kwargs)
    return _block(self, hidden_states, input_dimensions, **options)


def fallback_reason(layer, x=None) -> str | None:
    """Why the patched block runs its own code for a call on x (None: as configured), or None."""
    return (bypassed_hooks_reason(layer.attention, "attention", _called_modules(layer))
            or dropout_reason(layer._swin_kernels_backend, lambda: attention_spec(layer), x, None, layer.training))


def unsupported_reason(layer) -> str | None:
    a = getattr(layer, "attention", None)
    s = getattr(a, "self", None)
    needed = ("query", "key", "value", "logit_scale", "continuous_position_bias_mlp", "relative_coords_table",
              "relative_position_index")
    if s is None or not all(hasattr(s, name) for name in needed) or not hasattr(a, "output"):
        return "its attention does not have the Swinv2SelfAttention layout"
    if tuple(s.window_size) != (layer.window_size, layer.window_size):
        return f"its attention window {tuple(s.window_size)} differs from the block window {layer.window_size}"
    return bypassed_hooks_reason(a, "attention", _called_modules(layer))


def prepare(layer) -> None:
    layer._swin_kernels_arg_names = extra_arg_names(layer)


def attention_spec(layer) -> AttentionSpec:
    s = layer.attention.self
    heads = s.num_attention_heads
    return AttentionSpec(heads, int(s.attention_head_size), window_pair(s.window_size), float(s.dropout.p),
                         s.logit_scale)
