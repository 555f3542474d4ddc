"""Hugging Face transformers Swin V1 blocks: SwinLayer, DonutSwinLayer, MaskFormerSwinLayer.

Two layouts exist. transformers 5.x SwinLayer: ``attention.{q,k,v,o}_proj`` and
``attention.relative_position_bias.relative_position_bias_table``, returns ``(hidden_states, attn_weights)``.
The 4.x layout (SwinLayer of 4.x, DonutSwinLayer and MaskFormerSwinLayer of 5.x): ``attention.self.{query,key,
value}``, ``attention.self.relative_position_bias_table``, ``attention.output.dense``, returns a tuple.

The patched forward keeps the block's order of operations (norm, attention branch, dropout, residual, MLP) and
replaces pad -> roll -> partition -> attention -> reverse -> roll back -> crop by one fused call. Window clamping
is the block's own rule (``set_shift_and_window_size``: window = min(H, W), no shift, when min(H, W) <= window),
computed per call without changing the block (the class's forward changes its attributes for good; the patched
one leaves no state behind); MaskFormer's blocks never clamp. The q/k/v projections are read or called per call
(common.project), so wrappers and quantized Linears put on them after ``patch()`` run; hooks on modules the fused
path does not call make the block run its own code, with a warning. Where a clamped window
is smaller than the bias table's window (HF raises a shape error there), the fused path reads the centre of the
table, i.e. the relative positions that exist in the smaller window.
"""

from __future__ import annotations

from functools import partial

from ..bias import relative_position_bias
from ..geometry import WindowGeometry
from ..weights import window_pair
from .common import (
    AttentionSpec, attend, bypassed_hooks_reason, call_options, dropout_reason, extra_arg_names, original, project,
    run_own_code_warning,
)

NAME = "Hugging Face transformers Swin V1"
CLASS_NAMES = ("SwinLayer", "DonutSwinLayer", "MaskFormerSwinLayer", "ClapAudioLayer")
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


def _called_modules(layer):
    """(q, k, v projections, every module the fused path calls under ``attention``)."""
    a = layer.attention
    if _is_v5_layout(a):
        projections = (a.q_proj, a.k_proj, a.v_proj)
        return projections, projections + (a.o_proj,)
    s, o = a.self, a.output
    projections = (s.query, s.key, s.value)
    return projections, projections + (o.dense, o.dropout)


def _attention_v5(layer, x, g: WindowGeometry):
    """The attention branch of a 5.x SwinLayer on the normed map x (B, H, W, C), o_proj included."""
    a = layer.attention
    rpb = a.relative_position_bias
    qkv, pad_qkv = project(x, (a.q_proj, a.k_proj, a.v_proj), g)
    out = attend(
        qkv, pad_qkv, relative_position_bias(rpb.relative_position_bias_table, g.window, rpb.relative_position_index),
        a.num_attention_heads, g, a.scaling, a.attention_dropout if layer.training else 0.0,
        layer._swin_kernels_backend,
    )
    return a.o_proj(out)


def _attention_v4(layer, x, g: WindowGeometry):
    """The attention branch of a 4.x-layout block on the normed map x (B, H, W, C), output dense and dropout."""
    s, o = layer.attention.self, layer.attention.output
    qkv, pad_qkv = project(x, (s.query, s.key, s.value), g)
    out = attend(
        qkv, pad_qkv, relative_position_bias(s.relative_position_bias_table, g.window, s.relative_position_index),
        s.num_attention_heads, g, s.attention_head_size**-0.5, s.dropout.p if layer.training else 0.0,
        layer._swin_kernels_backend,
    )
    return o.dropout(o.dense(out))


def _clamped_window(layer, input_dimensions, always_partition) -> tuple[int, int]:
    """The window and shift the block's ``set_shift_and_window_size`` would set for this map, computed without
    changing the block (the class's forward changes it for good: one small input would shrink later windows)."""
    window, shift = int(layer.window_size), int(layer.shift_size)
    if not always_partition and hasattr(layer, "set_shift_and_window_size"):
        smaller = min(input_dimensions)  # not int() yet: under dynamic shapes that would specialise on the size
        if smaller <= window:
            return int(smaller), 0
    return window, shift


# -------------------------------------------------------------------------------------------------- forwards
def _block_v5(layer, hidden_states, input_dimensions, always_partition=False, **_):
    height, width = input_dimensions
    window, shift = _clamped_window(layer, input_dimensions, always_partition)
    g = WindowGeometry(int(height), int(width), window, shift)
    batch, _, channels = hidden_states.size()
    x = layer.layernorm_before(hidden_states).view(batch, height, width, channels)
    attention = layer.dropout(_attention_v5(layer, x, g))
    hidden_states = hidden_states + layer.drop_path(attention.view(batch, height * width, channels))
    residual = hidden_states
    hidden_states = layer.mlp(layer.layernorm_after(hidden_states))
    return layer.dropout(hidden_states) + residual, None


def _block_v4(layer, hidden_states, input_dimensions, always_partition=False, **_):
    height, width = input_dimensions
    window, shift = _clamped_window(layer, input_dimensions, always_partition)
    g = WindowGeometry(int(height), int(width), window, shift)
    batch, _, channels = hidden_states.size()
    x = layer.layernorm_before(hidden_states).view(batch, height, width, channels)
    attention = _attention_v4(layer, x, g)
    hidden_states = hidden_states + layer.drop_path(attention.view(batch, height * width, channels))
    layer_output = layer.intermediate(layer.layernorm_after(hidden_states))
    return (hidden_states + layer.output(layer_output),)


def _own_forward(layer, *args, **kwargs):
    """The class's forward, with the window and shift it clamps restored afterwards."""
    state = layer.window_size, layer.shift_size
    try:
        return original(layer, "forward", *args, **kwargs)
    finally:
        layer.window_size, layer.shift_size = state


def replacement(self, hidden_states, input_dimensions, *args, **kwargs):
    """Patched forward of an HF Swin V1 block; same signature and outputs as the original."""
    options = call_options(self, args, kwargs)
    if options.get("output_attentions") or options.get("head_mask") is not None or _attentions_recorded():
        # attention probabilities (or head masks) exist only in the unfused computation
        return _own_forward(self, hidden_states, input_dimensions, *args, **kwargs)
    window, _ = _clamped_window(self, input_dimensions, options.get("always_partition", False))
    reason = fallback_reason(self, hidden_states, (window, window))
    if reason is not None:
        run_own_code_warning(self, reason)
        return _own_forward(self, hidden_states, input_dimensions, *args, **kwargs)
    block = _block_v5 if _is_v5_layout(self.attention) else _block_v4
    if getattr(self, "gradient_checkpointing", False) and self.training:
        # the class forward checkpoints itself (GradientCheckpointingLayer); keep doing so
        return self._gradient_checkpointing_func(partial(block, self, **options), hidden_states, input_dimensions)
    return block(self, hidden_states, input_dimensions, **options)


def fallback_reason(layer, x=None, window=None) -> str | None:
    """Why the patched block runs its own code for a call on x (None: as configured), or None."""
    _, called = _called_modules(layer)
    return (bypassed_hooks_reason(layer.attention, "attention", called)
            or dropout_reason(layer._swin_kernels_backend, lambda: attention_spec(layer), x, window, layer.training))


# ---------------------------------------------------------------------------------------------- patch checks
def unsupported_reason(layer) -> str | None:
    """Why this block cannot take the fused path (None when it can)."""
    a = getattr(layer, "attention", None)
    if a is None:
        return "it has no `attention` submodule"
    if _is_v5_layout(a):
        if not all(hasattr(a, name) for name in ("k_proj", "v_proj", "o_proj")):
            return "its attention lacks k_proj/v_proj/o_proj"
        window = a.relative_position_bias.window_size
    elif hasattr(a, "self") and hasattr(a.self, "query") and hasattr(a, "output"):
        window = a.self.window_size
    else:
        return "its attention has neither the 5.x (q_proj/k_proj/v_proj/o_proj) nor the 4.x (self.query/...) layout"
    if len(set(window_pair(window))) != 1:
        return f"its window {tuple(window)} is not square (SwinLayer clamps square windows only)"
    return bypassed_hooks_reason(a, "attention", _called_modules(layer)[1])


def prepare(layer) -> None:
    """Per-block state of the fused path: the forward's argument names."""
    layer._swin_kernels_arg_names = extra_arg_names(layer)


def attention_spec(layer) -> AttentionSpec:
    a = layer.attention
    if _is_v5_layout(a):
        rpb = a.relative_position_bias
        heads, head_dim, tensor = a.num_attention_heads, a.head_dim, rpb.relative_position_bias_table
        window, dropout = rpb.window_size, a.attention_dropout
    else:
        s = a.self
        heads, head_dim, tensor = s.num_attention_heads, s.attention_head_size, s.relative_position_bias_table
        window, dropout = s.window_size, s.dropout.p
    return AttentionSpec(heads, int(head_dim), window_pair(window), float(dropout), tensor)
