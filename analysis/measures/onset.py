"""Onset: the first block, in depth order, where gating is class-specific beyond its controls.

The rule reads a blocks table (`tables.block_table`); its defaults and `ONSET_RULE`, the default
rule in words, go into each run's meta.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

ONSET_MIN_EXCESS = 0.1  # default effect size of the onset rule, in eta2 units above the null
ONSET_MIN_FRAC_SIGNIFICANT = 0.5  # default share of FDR-significant channels of the onset rule
ONSET_RULE = (
    "first block in depth order with eta2_ci_low - eta2_null > min_excess (eta2_excess where the "
    f"interval is NaN) and frac_significant >= {ONSET_MIN_FRAC_SIGNIFICANT}"
)  # the default rule in words, for run metadata


@dataclass(frozen=True)
class OnsetRule:
    """Where gating becomes class-specific: the first block, in depth order, that passes both tests.

    * specificity: with rule "ci", `eta2_ci_low - eta2_null > min_excess` (the whole jackknife
      interval lies that far above chance; where the interval is NaN, `eta2_excess` stands in); with
      rule "point", `eta2_excess > min_excess`;
    * breadth: `frac_significant >= min_frac_significant` (most channels are class-specific after
      FDR control, so that a few outlier channels do not make a block specific).
    """

    min_excess: float = ONSET_MIN_EXCESS
    min_frac_significant: float = ONSET_MIN_FRAC_SIGNIFICANT
    rule: Literal["ci", "point"] = "ci"

    def passes(self, blocks: pd.DataFrame) -> pd.Series:
        """Per block row, whether it satisfies the rule -> bool Series aligned with `blocks`."""
        if self.rule == "ci":
            excess = (blocks["eta2_ci_low"] - blocks["eta2_null"]).fillna(blocks["eta2_excess"])
        elif self.rule == "point":
            excess = blocks["eta2_excess"]
        else:
            raise ValueError(f"unknown onset rule {self.rule!r}; use 'ci' or 'point'.")
        return (excess > self.min_excess) & (blocks["frac_significant"] >= self.min_frac_significant)

    def onset(self, blocks: pd.DataFrame) -> str | None:
        """Name of the first passing block in depth order, or None."""
        ordered = blocks.sort_values("depth", kind="stable")
        hits = ordered["block"][self.passes(ordered)]
        return None if hits.empty else str(hits.iloc[0])


def find_onset(
    blocks: pd.DataFrame,
    *,
    min_excess: float = ONSET_MIN_EXCESS,
    rule: Literal["ci", "point"] = "ci",
    min_frac_significant: float = ONSET_MIN_FRAC_SIGNIFICANT,
) -> str | None:
    """Onset block of a `block_table` under `OnsetRule(min_excess, min_frac_significant, rule)`."""
    return OnsetRule(min_excess, min_frac_significant, rule).onset(blocks)
