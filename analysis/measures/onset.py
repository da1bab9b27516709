"""Onset: where gating becomes class-specific, by two rules read from a blocks table.

* `ShapeOnsetRule` (meta.json "block"): where it matters. The first block from which shape_sep,
  the class curves' differences beyond a per-class shift and scale of the common curve, stays
  above its controls in every later block (the SE paper: early blocks give one curve for all
  classes up to scale, later blocks class-specific curves).
* `OnsetRule` (meta.json "detectable"): where it can be detected, the first block whose eta2 is
  detectably above chance. At N = 10,000 every block of a trained network passes it.

Their defaults and rules in words (`SHAPE_ONSET_RULE`, `ONSET_RULE`) go into each run's meta.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

ONSET_MIN_EXCESS = 0.1  # default effect size of the onset rule, in eta2 units above the null
ONSET_MIN_FRAC_SIGNIFICANT = 0.5  # default share of FDR-significant channels of the onset rule
SHAPE_ONSET_MARGIN = 0.0  # default margin of shape_sep over each control, in shape_sep units
SHAPE_ONSET_RULE = (
    "first block in depth order from which, in it and every later block, shape_sep (the lower end "
    "of its jackknife interval, shape_sep_ci_low, where not NaN) exceeds by more than margin both "
    "the permutation null's largest value shape_sep_perm_max and, when the untrained control was "
    "collected, shape_sep_untrained; no block without the permutation null"
)  # the default rule in words, for run metadata
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


@dataclass(frozen=True)
class ShapeOnsetRule:
    """Where class-specific shape begins and holds: the first block from which every block, itself
    included, passes. A block passes when its shape_sep (`interval`: shape_sep_ci_low where not
    NaN) exceeds `shape_sep_perm_max + margin` and, where not NaN, `shape_sep_untrained + margin`.
    A block without the permutation null (NaN) does not pass: the null is the rule's reference.
    """

    margin: float = SHAPE_ONSET_MARGIN
    interval: bool = True

    def passes(self, blocks: pd.DataFrame) -> pd.Series:
        """Per block row, whether it is above its controls -> bool Series aligned with `blocks`."""
        value = blocks["shape_sep_ci_low"].fillna(blocks["shape_sep"]) if self.interval else blocks["shape_sep"]
        untrained = blocks["shape_sep_untrained"]
        above_untrained = untrained.isna() | (value > untrained + self.margin)
        return (value > blocks["shape_sep_perm_max"] + self.margin) & above_untrained

    def onset(self, blocks: pd.DataFrame) -> str | None:
        """Name of the first block of the passing run that reaches the last block, or None."""
        ordered = blocks.sort_values("depth", kind="stable")
        ok = self.passes(ordered).to_numpy()
        failed = (~ok).nonzero()[0]
        first = 0 if failed.size == 0 else int(failed[-1]) + 1
        return None if first >= ok.size else str(ordered["block"].iloc[first])
