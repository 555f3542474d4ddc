"""Marking host-side functions whose result torch.compile may treat as a constant, at no import cost."""

from __future__ import annotations


def constant_result(fn):
    """What ``torch.compiler.assume_constant_result`` does (set ``fn._dynamo_marked_constant``), without importing
    torch._dynamo: that import costs about 2 s, and happens anyway once something is compiled. Eager calls run
    ``fn`` as it is; dynamo calls it while tracing and puts its result in the graph as a constant.
    benchmarks/test_import_time.py checks that torch's own decorator still marks a function this way."""
    fn._dynamo_marked_constant = True
    return fn
