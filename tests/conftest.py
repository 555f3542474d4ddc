"""Test session set-up: Triton kernels run under the interpreter when there is no GPU; torchvision imports."""

import os

import torch

if not torch.cuda.is_available():
    # Must be set before triton is first imported (importing swin_kernels imports torch._dynamo, which imports
    # triton), so the kernels run on CPU tensors.
    os.environ.setdefault("TRITON_INTERPRET", "1")

from tools.torchvision_compat import make_torchvision_importable  # noqa: E402

# PyPI's torchvision is built for PyPI's CUDA torch; beside the CPU torch its compiled ops cannot load and it fails
# to import (and with it transformers and timm) unless two op schemas exist first. See torchvision_compat.
make_torchvision_importable()
