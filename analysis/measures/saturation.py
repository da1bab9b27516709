"""Saturation: the thresholds of gate values near 1 or 0 (GateStats counts them exactly), and the one
rule that calls a block saturated.

The SE paper removed the last stage's SE blocks at little cost because their gates saturate: most
gates near 1, so SE barely rescales the channels. A block is *saturated* when at least
`SATURATED_SHARE` of its gate values are >= `GATE_HIGH` (its `sat_high`); the report names these
blocks and `ablate` predicts them removable. Gates near 0 do not count: replacing them by 1 (SE
removed) changes the block's output most.
"""

from __future__ import annotations

import pandas as pd

from analysis.capture.config import SAT_HIGH as GATE_HIGH  # a gate value >= this is near 1 (counted in `sat_high`)
from analysis.capture.config import SAT_LOW as GATE_LOW  # a gate value <= this is near 0 (counted in `sat_low`)

SATURATED_SHARE = 0.5  # a block is saturated when at least this share of its gate values are >= GATE_HIGH
SATURATION_RULE = f"share of gates >= {GATE_HIGH} at least {SATURATED_SHARE:.0%}"  # the rule in words


def saturated(blocks: pd.DataFrame) -> pd.Series:
    """Per row of a blocks table, whether the block is saturated -> bool Series aligned with it
    (False where `sat_high` is NaN: a block without samples)."""
    return blocks["sat_high"] >= SATURATED_SHARE
