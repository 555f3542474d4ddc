"""pytest-benchmark: what ``import swin_kernels`` adds to ``import torch`` (best of 3 fresh interpreters).

The package must not pull in torch._dynamo (about 2 s) at import: its host-side dispatch functions are marked
for torch.compile by swin_kernels.ops.constant.constant_result, which sets what torch's own
``torch.compiler.assume_constant_result`` sets without importing dynamo. The second test checks that contract
against the torch installed here.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

IMPORT_BUDGET_S = 0.3
_PROBE = ("import json, sys, time; t = time.perf_counter(); import torch; a = time.perf_counter(); "
          "import swin_kernels; b = time.perf_counter(); "
          "print(json.dumps([a - t, b - a, 'torch._dynamo' in sys.modules]))")


def import_times(runs: int = 3) -> list[tuple[float, float, bool]]:
    """[(import torch s, import swin_kernels s on top, torch._dynamo imported)] from fresh interpreters."""
    return [tuple(json.loads(subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                                            check=True).stdout.strip().splitlines()[-1])) for _ in range(runs)]


def test_import_time(benchmark):
    times = import_times()
    added = min(t[1] for t in times)
    benchmark.group = "import swin_kernels on top of import torch"
    benchmark.extra_info.update(torch_s=min(t[0] for t in times), added_s=added, runs=times)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert not any(t[2] for t in times), "import swin_kernels imported torch._dynamo"
    assert added <= IMPORT_BUDGET_S, f"import swin_kernels adds {added:.2f} s to import torch (best of 3)"


def test_constant_mark_matches_torch():
    """constant_result marks a function the way torch.compiler.assume_constant_result does."""
    import torch

    from swin_kernels.ops.constant import constant_result

    def theirs():
        return 1

    def ours():
        return 1

    torch.compiler.assume_constant_result(theirs)
    constant_result(ours)
    added = {k for k in vars(theirs)}
    if added != {k for k in vars(ours)}:
        pytest.fail(f"torch's assume_constant_result now sets {sorted(added)}; constant_result sets "
                    f"{sorted(vars(ours))}: update swin_kernels/ops/constant.py")
    assert all(getattr(ours, k) == getattr(theirs, k) for k in added)
