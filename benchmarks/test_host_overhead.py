"""pytest-benchmark: the host-side cost of one patched Swin block call against the unpatched block, side by side.

benchmarks/host_overhead.py measures in a fresh interpreter (Triton's interpreter mode, kernels replaced by
launch recorders, one thread): per family the microseconds per block call, torch ops and Triton launches. The
numbers go into the benchmark's extra_info; the assertions check what must hold whatever the machine's speed.
"""

from __future__ import annotations

import pytest

from .host_overhead import FAMILIES, markdown, run_isolated

_RESULT = {}


def result() -> dict:
    if not _RESULT:
        _RESULT.update(run_isolated(FAMILIES))
        print("\n" + markdown(_RESULT))
    return _RESULT


@pytest.mark.parametrize("family", FAMILIES)
def test_host_overhead(benchmark, family):
    rows = [row for row in result()["blocks"] if row["family"] == family]
    assert len(rows) == 2, f"{family}: expected an unshifted and a shifted block, got {len(rows)}"
    for row in rows:
        # the fused op replaces the attention branch's many torch ops by one op and its launches
        assert row["patched_ops"] < row["unpatched_ops"], row
        assert row["patched_launches"] >= 1, f"{family}: the patched block launched no Triton kernel: {row}"
    benchmark.group = "host overhead per block call (CPU, kernels not run)"
    benchmark.extra_info.update(family=family, rows=rows, breakdown=result()["breakdown"])
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
