"""Saturation: how many gate values sit near 1 or 0, and the one rule that calls a block saturated.

The SE paper removed the last stage's SE blocks at little cost because their gates saturate: most
gates near 1, so SE barely rescales the channels. A block is *saturated* when at least
`SATURATED_SHARE` of its gate values are >= `GATE_HIGH` (its `sat_high`); the report names these
blocks and `ablate` predicts them removable. Gates near 0 do not count: replacing them by 1 (SE
removed) changes the block's output most.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.measures._arrays import Array, as_numpy

from analysis.capture.config import SAT_HIGH as GATE_HIGH  # a gate value >= this is near 1 (counted in `sat_high`)
from analysis.capture.config import SAT_LOW as GATE_LOW  # a gate value <= this is near 0 (counted in `sat_low`)
SATURATED_SHARE = 0.5  # a block is saturated when at least this share of its gate values are >= GATE_HIGH
SATURATION_RULE = f"share of gates >= {GATE_HIGH} at least {SATURATED_SHARE:.0%}"  # the rule in words


def saturation(
    bin_counts: Array, *, low: float = GATE_LOW, high: float = GATE_HIGH
) -> tuple[np.ndarray, np.ndarray]:
    """(share >= high, share <= low) of gate values from counts over B bins on [0, 1]: [..., B] -> [...].

    Exact when a threshold is a bin edge (a value exactly on `low` then counts as above it);
    otherwise the bin holding it is split linearly, as if its values were uniform. NaN without values.
    """
    counts = as_numpy(bin_counts).astype(np.float64)
    b = counts.shape[-1]

    def below(x: float) -> np.ndarray:
        pos = x * b
        pos = float(round(pos)) if abs(pos - round(pos)) < 1e-9 else pos
        j = min(math.floor(pos), b - 1)
        return counts[..., :j].sum(-1) + (pos - j) * counts[..., j]

    with np.errstate(divide="ignore", invalid="ignore"):
        total = counts.sum(-1)
        return 1.0 - below(high) / total, below(low) / total


def saturated(blocks: pd.DataFrame) -> pd.Series:
    """Per row of a blocks table, whether the block is saturated -> bool Series aligned with it
    (False where `sat_high` is NaN: a block without samples)."""
    return blocks["sat_high"] >= SATURATED_SHARE
