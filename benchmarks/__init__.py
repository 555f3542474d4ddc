"""Benchmarks of swin-kernels against the implementations a Swin user would otherwise pick.

``pytest benchmarks/`` times every contender on Swin stage shapes (pytest-benchmark); ``python -m benchmarks.demo``
checks the backends, runs a short comparison and the W-MSA vs MSA complexity study, and writes results/REPORT.md.
"""

from tools.torchvision_compat import make_torchvision_importable

# Before anything imports transformers, timm or torchvision: see tools/torchvision_compat.py.
make_torchvision_importable()
