"""MONAI SwinUNETR 2-D end to end (benchmarks/end_to_end_medical.py): a tiny model patched vs unpatched, timed once
side by side; the patched model must agree with MONAI's own (fp32)."""

import pytest

from .end_to_end_medical import run

pytest.importorskip("monai", reason="monai is not installed")
pytest.importorskip("einops", reason="einops is not installed")


def test_swinunetr_2d_patched_vs_unpatched():
    result = run(size=64, batch=1, rounds=1, tiny=True)
    assert result["blocks_patched"] == 8
    assert result["relative_difference"] < 1e-5
    assert result["patched_ms"] > 0 and result["unpatched_ms"] > 0
