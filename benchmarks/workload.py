"""The inputs of one benchmarked call, shared by every contender, and the three passes timed on them.

One official-structure block per shape holds the weights every contender copies, so all contenders compute
the same function of the same fresh random inputs. The relative position bias table is drawn with unit
variance (a trained table has entries of that order; the init's 0.02 would hide bias mistakes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from swin_kernels import reference as ref
from swin_kernels.reference_model import SwinTransformerBlock

from .shapes import BenchShape

PASSES = ("forward", "backward", "forward+backward")
LEVELS = ("branch", "core")
LEVEL_TITLES = {
    "branch": "attention branch (x -> qkv Linear -> attention -> proj)",
    "core": "attention core (qkv map -> output)",
}


@dataclass
class Workload:
    shape: BenchShape
    device: torch.device
    dtype: torch.dtype
    block: SwinTransformerBlock  # official structure; block.attn holds the weights every contender copies
    x: torch.Tensor  # (B, H, W, C) normed map, the branch's input
    qkv: torch.Tensor  # (B, H, W, 3C) = qkv Linear of x, the core's input
    pad_qkv: torch.Tensor  # (3C,) the qkv Linear's bias, what padded tokens see
    bias: torch.Tensor  # (heads, N, N) gathered relative position bias
    grad_out: torch.Tensor  # (B, H, W, C) upstream gradient for the backward passes

    @property
    def scale(self) -> float:
        return float(self.block.attn.scale)

    def core_inputs(self) -> tuple[torch.Tensor, ...]:
        return self.qkv, self.pad_qkv, self.bias


def make_workload(shape: BenchShape, device: torch.device, dtype: torch.dtype, seed: int = 0) -> Workload:
    torch.manual_seed(seed)
    block = SwinTransformerBlock(shape.channels, shape.heads, shape.window, shape.shift)
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_()
    block = block.to(device=device, dtype=dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(shape.batch, shape.height, shape.width, shape.channels, generator=gen).to(device, dtype)
    grad_out = torch.randn(x.shape, generator=gen).to(device, dtype)
    attn = block.attn
    with torch.no_grad():
        qkv = attn.qkv(x)
        bias = ref.relative_position_bias(attn.relative_position_bias_table, shape.window)
        pad_qkv = attn.qkv.bias.clone()
    return Workload(shape, device, dtype, block, x.requires_grad_(), qkv.requires_grad_(),
                    pad_qkv.requires_grad_(), bias.requires_grad_(), grad_out)


@dataclass
class Prepared:
    """A contender ready to run one shape: ``forward(*inputs)`` -> (B, H, W, C)."""

    forward: Callable[..., torch.Tensor]
    inputs: tuple[torch.Tensor, ...]  # leaves requiring grad; inputs[0] is x (branch) or qkv (core)
    params: tuple[torch.Tensor, ...] = ()  # weights that receive gradients too

    def gradients(self, out: torch.Tensor, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        leaves = self.inputs + self.params
        return torch.autograd.grad(out, leaves, grad_out, allow_unused=True)


def pass_callables(prepared: Prepared, pass_name: str, grad_out: torch.Tensor):
    """(target, setup) for one pass: the timed call is ``target(*setup())``.

    forward: inference (no autograd graph). backward: the gradients of every input and weight, from a graph
    that ``setup`` builds untimed. forward+backward: both, as one training step of the branch.
    Targets return the output (forward) or the gradients (the other passes).
    """
    inputs = prepared.inputs
    if pass_name == "forward":
        def forward():
            with torch.no_grad():
                return prepared.forward(*inputs)
        return forward, lambda: ()
    if pass_name == "backward":
        return (lambda out: prepared.gradients(out, grad_out)), (lambda: (prepared.forward(*inputs),))
    if pass_name == "forward+backward":
        return (lambda: prepared.gradients(prepared.forward(*inputs), grad_out)), (lambda: ())
    raise ValueError(f"unknown pass {pass_name!r}; choose from {PASSES}")
