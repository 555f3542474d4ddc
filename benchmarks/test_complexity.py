"""The complexity study's counting and fitting, checked on cases whose answers are known exactly."""

from __future__ import annotations

import pytest

from .complexity import Series, count_crossover, crossover, flop_row, loglog_slope, omega_msa, omega_wmsa, worked_example


@pytest.mark.parametrize("windows_per_side", [1, 2, 4, 8])
@pytest.mark.parametrize("channels, heads, window", [(96, 3, 7), (128, 4, 7), (64, 2, 4), (128, 4, 12)])
def test_counted_flops_are_twice_the_formulas_where_they_hold(windows_per_side, channels, heads, window):
    side = windows_per_side * window  # the formulas assume h, w multiples of M
    row = flop_row(side, channels, heads, window)
    assert row.msa == 2 * omega_msa(side, side, channels)
    assert row.wmsa_official == 2 * omega_wmsa(side, side, channels, window)
    assert row.wmsa_fused == 2 * omega_wmsa(side, side, channels, window)


@pytest.mark.parametrize("side", [10, 30, 50])
def test_padded_maps_follow_the_padded_forms(side):
    row = flop_row(side, 96, 3, 7)
    assert not row.divisible
    assert row.matches
    # padding makes W-MSA do more than the unpadded formula says
    assert row.wmsa_official > row.wmsa_fused > 2 * row.omega_wmsa


def test_worked_example_of_the_paper():
    example = worked_example()  # h = w = 112, M = 7, C = 128
    assert example.counted_saving_macs == example.formula_saving_macs
    assert round(example.counted_saving_macs / 1e10, 1) == 4.0


def test_loglog_slope_recovers_a_power_law():
    tokens = [49, 196, 784, 3136]
    assert loglog_slope(tokens, [3.0 * t**2 for t in tokens]) == pytest.approx(2.0)
    assert loglog_slope(tokens, [0.5 * t for t in tokens]) == pytest.approx(1.0)


def test_crossover_interpolates_between_the_last_global_win_and_the_first_window_win():
    msa = Series("MSA", [100, 400], [1.0, 4.0])
    wmsa = Series("W-MSA", [100, 400], [2.0, 2.0])  # ratio 2 at 100 tokens, 0.5 at 400: equal at 200
    text = crossover(msa, wmsa)
    assert "≈ 200 tokens" in text
    assert "W-MSA was faster at every size" in crossover(msa, Series("W", [100, 400], [0.5, 0.5]))


def test_count_crossover_names_the_padded_sizes():
    # e.g. 8x8 pads to 14x14: four windows of work for a map global attention handles with fewer multiply-adds
    text = count_crossover(96, 7)
    assert "official W-MSA on 8², 9², 10², 11², 15² " in text
    assert "FusedWindowAttention on 8², 9² " in text
