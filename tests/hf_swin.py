"""Helpers to build Hugging Face transformers' Swin (an independent implementation) next to the reference.

HF 5.x splits the qkv projection into q_proj/k_proj/v_proj and keeps the bias table in a submodule; these helpers
copy weights from HF modules into the reference modules and map parameter gradients back for comparison.
"""

from __future__ import annotations

import torch
from transformers import SwinConfig
from transformers.models.swin import modeling_swin as hf

from swin_kernels import reference_model as rm


def config(**overrides) -> SwinConfig:
    """A small Swin config; sdpa attention keeps fp64 in fp64 (HF's eager path runs the softmax in fp32)."""
    values = dict(image_size=64, patch_size=4, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4,
                  drop_path_rate=0.0, attn_implementation="sdpa")
    values.update(overrides)
    return SwinConfig(**values)


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values in every parameter (HF initialises the bias table to zeros and norms to ones)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            if p.dim() >= 2 and "relative_position_bias_table" not in name:
                noise = noise / (p[0].numel() ** 0.5)  # unit gain for Linear / Conv weights
            elif name.endswith("weight"):
                noise = 1.0 + 0.2 * noise  # LayerNorm scales near one
            p.copy_(noise)
    return module


def _copy(dst: torch.nn.Module, src: torch.nn.Module) -> None:
    dst.weight.data.copy_(src.weight.data)
    if getattr(src, "bias", None) is not None:
        dst.bias.data.copy_(src.bias.data)


def block_pairs(layer: "hf.SwinLayer", block: rm.SwinTransformerBlock):
    """(reference parameter, [HF parameters it is made of]) for every parameter of a block."""
    a = layer.attention
    pairs = [
        (block.norm1.weight, [layer.layernorm_before.weight]), (block.norm1.bias, [layer.layernorm_before.bias]),
        (block.attn.qkv.weight, [a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]),
        (block.attn.qkv.bias, [a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]),
        (block.attn.proj.weight, [a.o_proj.weight]), (block.attn.proj.bias, [a.o_proj.bias]),
        (block.norm2.weight, [layer.layernorm_after.weight]), (block.norm2.bias, [layer.layernorm_after.bias]),
        (block.mlp.fc1.weight, [layer.mlp.fc1.weight]), (block.mlp.fc1.bias, [layer.mlp.fc1.bias]),
        (block.mlp.fc2.weight, [layer.mlp.fc2.weight]), (block.mlp.fc2.bias, [layer.mlp.fc2.bias]),
    ]
    table = block.attn.relative_position_bias_table
    hf_table = a.relative_position_bias.relative_position_bias_table
    return pairs, (table, hf_table)


def table_centre(table: torch.Tensor, small_side: int) -> torch.Tensor:
    """View of the centre (2m-1)x(2m-1) part of a ((2M-1)², heads) table, flattened like a small table."""
    side = round(table.shape[0] ** 0.5)
    start = (side - small_side) // 2
    grid = table.view(side, side, -1)[start:start + small_side, start:start + small_side]
    return grid


def load_block(block: rm.SwinTransformerBlock, layer: "hf.SwinLayer") -> None:
    pairs, (table, hf_table) = block_pairs(layer, block)
    with torch.no_grad():
        for ours, theirs in pairs:
            ours.copy_(torch.cat([t.reshape(-1) for t in theirs]).view_as(ours))
        small_side = round(hf_table.shape[0] ** 0.5)
        table_centre(table, small_side).copy_(hf_table.view(small_side, small_side, -1))


def block_grad_pairs(layer, block):
    """(reference grad, HF grad assembled the same way) for every parameter of a block."""
    pairs, (table, hf_table) = block_pairs(layer, block)
    out = [(ours.grad, torch.cat([t.grad.reshape(-1) for t in theirs]).view_as(ours)) for ours, theirs in pairs]
    small_side = round(hf_table.shape[0] ** 0.5)
    out.append((table_centre(table.grad, small_side).reshape(-1, table.shape[1]), hf_table.grad))
    return out


def load_merging(ours: rm.PatchMerging, theirs: "hf.SwinPatchMerging") -> None:
    _copy(ours.norm, theirs.norm)
    _copy(ours.reduction, theirs.reduction)


def load_stage(stage: rm.SwinStage, hf_stage: "hf.SwinStage") -> None:
    for block, layer in zip(stage.blocks, hf_stage.blocks, strict=True):
        load_block(block, layer)
    if hf_stage.downsample is not None:
        load_merging(stage.downsample, hf_stage.downsample)


def reference_model_for(cfg: SwinConfig, num_classes: int = 0) -> rm.SwinTransformer:
    return rm.SwinTransformer(in_chans=cfg.num_channels, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim,
                              depths=cfg.depths, num_heads=cfg.num_heads, window_size=cfg.window_size,
                              mlp_ratio=cfg.mlp_ratio, qkv_bias=cfg.qkv_bias, num_classes=num_classes,
                              layer_norm_eps=cfg.layer_norm_eps)


def load_model(ours: rm.SwinTransformer, swin: "hf.SwinModel", classifier=None) -> None:
    _copy(ours.patch_embed, swin.embeddings.patch_embeddings.projection)
    _copy(ours.patch_norm, swin.embeddings.norm)
    for stage, hf_stage in zip(ours.stages, swin.encoder.layers, strict=True):
        load_stage(stage, hf_stage)
    _copy(ours.norm, swin.layernorm)
    if classifier is not None:
        _copy(ours.head, classifier)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Norm-wise relative error ||actual - expected||₂ / ||expected||₂, computed in fp64."""
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    difference = torch.linalg.vector_norm(actual.double() - expected.double()).item()
    return difference / max(torch.linalg.vector_norm(expected.double()).item(), 1e-300)
