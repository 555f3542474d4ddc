"""Patched vs unpatched checks shared by the family tests: a library's own model against its patched copy.

fp64: outputs and the gradients of the input and of every parameter within 1e-10. fp32: the error of each, against
the fp64 unpatched model, within twice the error of the unpatched fp32 model (plus a small absolute floor).
Every block of the model must be patched and call the fused op once per forward.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch

import swin_kernels
from swin_kernels import functional
from swin_kernels.patches import is_patched

FP64_TOL = 1e-10
FP32_FLOOR = 1e-6


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random values in every parameter (norm weights and zero-initialised layer scales included), so that every
    branch contributes to the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.2)
    return model


def eval_mode(model):
    model.eval()  # some OpenMMLab backbones' train() returns None
    return model


@contextmanager
def count_fused_calls():
    calls = []
    original = functional.attention_on_geometry

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    functional.attention_on_geometry = counting
    try:
        yield calls
    finally:
        functional.attention_on_geometry = original


def _flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flat(o)]
    raise TypeError(type(out))


def run(model, x: torch.Tensor):
    """(outputs, input grad, parameter grads) of a forward and a backward of sum(outputs · fixed weights)."""
    x = x.detach().clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    outs = _flat(model(x))
    g = torch.Generator().manual_seed(1)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype)).sum() for o in outs)
    loss.backward()
    grads = [p.grad for _, p in sorted(model.named_parameters()) if p.requires_grad]
    return [o.detach() for o in outs], x.grad, grads


def max_error(a, b) -> float:
    pairs = list(zip(a[0], b[0])) + [(a[1], b[1])] + [(p, q) for p, q in zip(a[2], b[2]) if p is not None]
    assert len(a[2]) == len(b[2])
    for p, q in zip(a[2], b[2]):
        assert (p is None) == (q is None)
    return max((p.double() - q.double()).abs().max().item() for p, q in pairs)


def patch_counting(model, backend: str):
    """A patched deep copy of ``model`` and the number of blocks patched."""
    patched = swin_kernels.patch(copy.deepcopy(model), backend=backend)
    return patched, sum(is_patched(m) for m in patched.modules())


def check_fp64(model, x, backend: str, blocks: int) -> float:
    """fp64 outputs and gradients of the patched model against the model; every block fused once per forward."""
    model = eval_mode(model.double())
    x = x.double()
    expected = run(model, x)
    patched, n = patch_counting(model, backend)
    assert n == blocks, f"{n} of {blocks} blocks patched"
    with count_fused_calls() as calls:
        got = run(patched, x)
    assert len(calls) == blocks, f"{len(calls)} fused calls for {blocks} blocks"
    err = max_error(got, expected)
    assert err <= FP64_TOL, err
    return err


def check_fp32(model, x, backend: str) -> tuple[float, float]:
    """fp32 patched error (outputs and gradients, vs fp64) within twice the unpatched fp32 model's own error."""
    model = eval_mode(model.double())
    reference = run(model, x.double())
    model32 = eval_mode(copy.deepcopy(model).float())
    own = max_error(run(model32, x.float()), reference)
    patched, _ = patch_counting(model32, backend)
    err = max_error(run(patched, x.float()), reference)
    assert err <= 2 * own + FP32_FLOOR, (err, own)
    return err, own
