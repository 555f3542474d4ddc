"""Hugging Face transformers Swin V1 blocks: SwinLayer, DonutSwinLayer, MaskFormerSwinLayer.

Two layouts exist. transformers 5.x SwinLayer: ``attention.{q,k,v,o}_proj`` and
``attention.relative_position_bias.relative_position_bias_table``, returns ``(hidden_states, attn_weights)``.
The 4.x layout (SwinLayer of 4.x, DonutSwinLayer and MaskFormerSwinLayer of 5.x): ``attention.self.{query,key,
value}``, ``attention.self.relative_position_bias_table``, ``attention.output.dense``, returns a tuple.

The patched forward keeps the block's order of operations (norm, attention branch, dropout, residual, MLP) and
replaces pad -> roll -> partition -> attention -> reverse -> roll back -> crop by one fused call. Window clamping
is the block's own: ``set_shift_and_window_size`` runs as in the original forward (it updates the block's
window/shift attributes, which the original does too), MaskFormer's blocks never clamp. Where a clamped window
is smaller than the bias table's window (HF raises a shape error there), the fused path reads the centre of the
table, i.e. the relative positions that exist in the smaller window.
"""

from __future__ import annotations

from functools import partial

from ..bias import relative_position_bias
from ..weights import window_pair
from .common import (
    AttentionSpec, ConcatenatedParameters, call_options, extra_arg_names, hooks_reason, named_backend_lacks_dropout,
    original, plain_linear_reason, window_attention_branch,
)

NAME = "Hugging Face transformers Swin V1"
CLASS_NAMES = ("SwinLayer", "DonutSwinLayer", "MaskFormerSwinLayer")
MODULE_PREFIX = "transformers.models."
REPLACES = "forward"


def _attentions_recorded() -> bool:
    """transformers 5.x asks for attention weights through an output collector, not an argument."""
    try:
        from transformers.utils.output_capturing import _active_collector
    except ImportError:
        return False
    collected = _active_collector.get()
    return bool(collected) and "attentions" in collected


# ------------------------------------------------------------------------------------------ attention layouts
def _is_v5_layout(attention) -> bool:
    return hasattr(attention, "q_proj") and hasattr(attention, "relative_position_bias")


def _attention_v5(layer, x, window: int, shift: int):
    """The attention branch of a 5.x SwinLayer on the normed map x (B, H, W, C), o_proj included."""
    a = layer.attention
    rpb = a.relative_position_bias
    weight = layer._swin_kernels_qkv_weight((a.q_proj.weight, a.k_proj.weight, a.v_proj.weight))
    bias = None if a.q_proj.bias is None else layer._swin_kernels_qkv_bias((a.q_proj.bias, a.k_proj.bias,
                                                                              a.v_proj.bias))
    out = window_attention_branch(
        x, weight, bias, relative_position_bias(rpb.relative_position_bias_table, window, rpb.relative_position_index),
        a.num_attention_heads, window, shift, a.scaling, a.attention_dropout if layer.training else 0.0,
        layer._swin_kernels_backend,
    )
    return a.o_proj(out)


def _attention_v4(layer, x, window: int, shift: int):
    """The attention branch of a 4.x-layout block on the normed map x (B, H, W, C), output dense and dropout."""
    s, o = layer.attention.self, layer.attention.output
    weight = layer._swin_kernels_qkv_weight((s.query.weight, s.key.weight, s.value.weight))
    bias = None if s.query.bias is None else layer._swin_kernels_qkv_bias((s.query.bias, s.key.bias, s.value.bias))
    out = window_attention_branch(
        x, weight, bias, relative_position_bias(s.relative_position_bias_table, window, s.relative_position_index),
        s.num_attention_heads, window, shift, s.attention_head_size**-0.5, s.dropout.p if layer.training else 0.0,
        layer._swin_kernels_backend,
    )
    return o.dropout(o.dense(out))


def _clamped_window(layer, input_dimensions, always_partition) -> tuple[int, int]:
    if not always_partition and hasattr(layer, "set_shift_and_window_size"):
        layer.set_shift_and_window_size(input_dimensions)
    return int(layer.window_size), int(layer.shift_size)


# -------------------------------------------------------------------------------------------------- forwards
def _block_v5(layer, hidden_states, input_dimensions, always_partition=False, **_):
    window, shift = _clamped_window(layer, input_dimensions, always_partition)
    height, width = input_dimensions
    batch, _, channels = hidden_states.size()
    x = layer.layernorm_before(hidden_states).view(batch, height, width, channels)
    attention = layer.dropout(_attention_v5(layer, x, window, shift))
    hidden_states = hidden_states + layer.drop_path(attention.view(batch, height * width, channels))
    residual = hidden_states
    hidden_states = layer.mlp(layer.layernorm_after(hidden_states))
    return layer.dropout(hidden_states) + residual, None


def _block_v4(layer, hidden_states, input_dimensions, always_partition=False, **_):
    window, shift = _clamped_window(layer, input_dimensions, always_partition)
    height, width = input_dimensions
    batch, _, channels = hidden_states.size()
    x = layer.layernorm_before(hidden_states).view(batch, height, width, channels)
    attention = _attention_v4(layer, x, window, shift)
    hidden_states = hidden_states + layer.drop_path(attention.view(batch, height * width, channels))
    layer_output = layer.intermediate(layer.layernorm_after(hidden_states))
    return (hidden_states + layer.output(layer_output),)


def replacement(self, hidden_states, input_dimensions, *args, **kwargs):
    """Patched forward of an HF Swin V1 block; same signature and outputs as the original."""
    options = call_options(self, args, kwargs)
    if (options.get("output_attentions") or options.get("head_mask") is not None or _attentions_recorded()
            or _dropout_unavailable(self, hidden_states)):
        # attention probabilities (or head masks) exist only in the unfused computation
        return original(self, "forward", hidden_states, input_dimensions, *args, **kwargs)
    block = _block_v5 if _is_v5_layout(self.attention) else _block_v4
    if getattr(self, "gradient_checkpointing", False) and self.training:
        # the class forward checkpoints itself (GradientCheckpointingLayer); keep doing so
        return self._gradient_checkpointing_func(partial(block, self, **options), hidden_states, input_dimensions)
    return block(self, hidden_states, input_dimensions, **options)


# ---------------------------------------------------------------------------------------------- patch checks
def unsupported_reason(layer) -> str | None:
    """Why this block cannot take the fused path (None when it can)."""
    a = getattr(layer, "attention", None)
    if a is None:
        return "it has no `attention` submodule"
    if _is_v5_layout(a):
        linears = dict(q_proj=a.q_proj, k_proj=a.k_proj, v_proj=a.v_proj, o_proj=a.o_proj)
        window = a.relative_position_bias.window_size
    elif hasattr(a, "self") and hasattr(a.self, "query") and hasattr(a, "output"):
        linears = dict(query=a.self.query, key=a.self.key, value=a.self.value, dense=a.output.dense)
        window = a.self.window_size
    else:
        return "its attention has neither the 5.x (q_proj/k_proj/v_proj/o_proj) nor the 4.x (self.query/...) layout"
    if len(set(window_pair(window))) != 1:
        return f"its window {tuple(window)} is not square (SwinLayer clamps square windows only)"
    return plain_linear_reason(**linears) or hooks_reason(**dict(layer.attention.named_modules(prefix="attention")))


def prepare(layer) -> None:
    """Per-block state of the fused path: the q/k/v concatenation caches, the forward's argument names."""
    layer._swin_kernels_qkv_weight = ConcatenatedParameters()
    layer._swin_kernels_qkv_bias = ConcatenatedParameters()
    layer._swin_kernels_arg_names = extra_arg_names(layer)


def attention_spec(layer) -> AttentionSpec:
    a = layer.attention
    if _is_v5_layout(a):
        heads, weight = a.num_attention_heads, a.q_proj.weight
        window, dropout = a.relative_position_bias.window_size, a.attention_dropout
    else:
        heads, weight = a.self.num_attention_heads, a.self.query.weight
        window, dropout = a.self.window_size, a.self.dropout.p
    return AttentionSpec(heads, weight.shape[0] // heads, window_pair(window), float(dropout), weight)


def _dropout_unavailable(layer, hidden_states) -> bool:
    spec = attention_spec(layer)
    p = spec.dropout if layer.training else 0.0
    return named_backend_lacks_dropout(layer._swin_kernels_backend, hidden_states, spec.window, spec.head_dim, p)
