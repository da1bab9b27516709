"""The onset rule on planted depth profiles and on hand-made block tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.measures.onset import OnsetRule, find_onset
from analysis.measures.tables import block_table
from analysis.testing import fakes
from analysis.testing.fakes import FakeStats, balanced_labels, planted


def test_onset_is_the_first_planted_block_and_none_without_class_effects() -> None:
    depth_model = fakes.depth_model()
    assert find_onset(block_table(depth_model)) == "SE_3_1"
    rng = np.random.default_rng(5)
    y = balanced_labels(1500, 10, rng)
    flat = FakeStats({f"SE_{i}": planted(y, 10, 16, 0.0, rng) for i in range(1, 5)}, y, num_classes=10)
    assert find_onset(block_table(flat)) is None


def test_onset_rule_uses_the_interval_falls_back_to_the_point_excess_and_needs_breadth() -> None:
    blocks = pd.DataFrame(
        {
            "block": ["a", "b", "c", "d"],
            "depth": [4, 1, 2, 3],  # not in depth order on purpose
            "eta2_null": [0.01] * 4,
            "eta2_excess": [0.5, 0.3, 0.3, 0.3],
            "eta2_ci_low": [0.4, 0.05, np.nan, 0.3],
            "frac_significant": [1.0, 1.0, 0.4, 1.0],
        }
    )
    assert find_onset(blocks) == "d"  # b: interval too low; c: too few channels
    assert find_onset(blocks, rule="point") == "b"
    assert find_onset(blocks, min_frac_significant=0.3) == "c"  # c's NaN interval -> excess
    assert find_onset(blocks, min_excess=0.45) is None
    assert OnsetRule(min_excess=0.35).onset(blocks) == "a"
    with pytest.raises(ValueError, match="unknown onset rule"):
        find_onset(blocks, rule="median")  # type: ignore[arg-type]
