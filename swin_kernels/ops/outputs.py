"""Output allocation shared by the kernel backends, with a poisoning switch for tests.

Under ``poison_outputs()`` every output a backend allocates starts as NaN (and the compiled library, which
reads SWIN_KERNELS_POISON_OUTPUTS, does the same), so an element a kernel forgets to write shows up.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch

POISON_ENV = "SWIN_KERNELS_POISON_OUTPUTS"


def poisoning() -> bool:
    return os.environ.get(POISON_ENV, "0") == "1"


def new_output(shape, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """torch.empty, or a NaN-filled tensor while outputs are poisoned."""
    dtype = like.dtype if dtype is None else dtype
    if poisoning():
        return torch.full(shape, float("nan"), dtype=dtype, device=like.device)
    return torch.empty(shape, dtype=dtype, device=like.device)


@contextmanager
def poison_outputs():
    previous = os.environ.get(POISON_ENV)
    os.environ[POISON_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[POISON_ENV]
        else:
            os.environ[POISON_ENV] = previous
