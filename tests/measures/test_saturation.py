"""Saturation shares from histograms, and the one rule that calls a block saturated."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.measures.saturation import SATURATION_RULE, saturated, saturation


def test_saturation_is_exact_on_bin_edges_and_linear_inside_a_bin() -> None:
    counts = np.array([3, 1, 0, 0, 0, 0, 0, 0, 2, 4])  # B = 10: 0.1 and 0.9 are edges
    high, low = saturation(counts)
    assert (high, low) == (0.4, 0.3)
    counts = np.array([4, 0, 0, 0, 0, 0, 0, 6])  # B = 8: 0.1 and 0.9 fall inside bins 0 and 7
    high, low = saturation(counts)
    assert high == pytest.approx(6 * (1 - 0.9) / (1 / 8) / 10)
    assert low == pytest.approx(4 * 0.1 / (1 / 8) / 10)
    assert all(math.isnan(v) for v in saturation(np.zeros(20)))


def test_a_block_is_saturated_when_half_of_its_gates_are_near_one() -> None:
    blocks = pd.DataFrame(
        {"block": list("abcde"), "sat_high": [0.5, 0.49, 0.0, 1.0, np.nan], "sat_low": [0.0, 0.5, 0.9, 0.0, np.nan]}
    )
    assert saturated(blocks).tolist() == [True, False, False, True, False]  # gates near 0 do not count
    assert saturated(blocks.set_index("block")).index.tolist() == list("abcde")
    assert SATURATION_RULE == "share of gates >= 0.9 at least 50%"
