"""The one rule that calls a block saturated."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.measures.saturation import SATURATION_RULE, saturated


def test_a_block_is_saturated_when_half_of_its_gates_are_near_one() -> None:
    blocks = pd.DataFrame(
        {"block": list("abcde"), "sat_high": [0.5, 0.49, 0.0, 1.0, np.nan], "sat_low": [0.0, 0.5, 0.9, 0.0, np.nan]}
    )
    assert saturated(blocks).tolist() == [True, False, False, True, False]  # gates near 0 do not count
    assert saturated(blocks.set_index("block")).index.tolist() == list("abcde")
    assert SATURATION_RULE == "share of gates >= 0.9 at least 50%"
