"""The answer as named notions of "class-specific", each against its own control, with its certainty.

    draws = resample_statistics(stats, gates, shard_weights(S, R, seed))   # [R, G] per statistic
    shares, records = answer(blocks, draws, controls, NotionRules())       # per-block shares, meta.json

* detectable: class information above chance. eta2_mean above its null (K'-1)/(N-1) by an effect
  size, with most channels FDR-significant. Control: chance; it needs no untrained network.
* magnitude: class modulation in gate units (class_mod) above the untrained network's band and the
  permutation null. eta2 is scale-free, so a block whose class means span 1e-4 gate units can have
  eta2 0.4 (the shipped SE_2_2): detectable is not large.
* shape: class curves that are not copies of the common curve (shape_sep: what a per-class shift
  and scale of the common curve leaves, over the block's gate SD) above the untrained band and the
  permutation null: the SE paper's visual notion.

Each notion's onset is the first block from which it holds in every later block (`onset`). Its
certainty comes from draws: R shard-bootstrap resamples of the run's statistics (the same resample
for every block), each held against each of the J untrained seeds (detectable: against chance
only). The point answer holds the statistics against the band's upper end, the largest value over
the seeds: with J seeds, the chance that one more untrained network lies above all of them is
1/(J+1) whatever their distribution, and a mean + k SD from 3 seeds would rest on an SD with 2
degrees of freedom. Without the control (or the permutation null) a notion that needs it is
undetermined, never passed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from analysis.measures._arrays import as_numpy
from analysis.measures.anova import anova, class_modulation, eta2_null, eta_squared, f_p_value, f_statistic
from analysis.measures.onset import onset_index, onset_record, undetermined
from analysis.measures.profiles import profile_separation
from analysis.measures.resampling import resampled
from analysis.measures.testing import benjamini_hochberg

ONSET_MIN_EXCESS = 0.1  # detectable: eta2 above its null by this (an effect size, not a p-value)
ONSET_MIN_FRAC_SIGNIFICANT = 0.5  # detectable: share of FDR-significant channels
NULL_QUANTILE = 0.95  # the permutation null's quantile a statistic must exceed (a maximum would grow with P)
RESAMPLES = 400  # shard-bootstrap resamples behind each certainty and shape_sep's interval
NO_CONTROL = "no untrained control"


@dataclass(frozen=True)
class NotionRules:
    """The thresholds of the notions (recorded with the rules in meta.json)."""

    min_excess: float = ONSET_MIN_EXCESS
    min_frac_significant: float = ONSET_MIN_FRAC_SIGNIFICANT
    magnitude_margin: float = 0.0  # gate units above the band's upper end and the null
    shape_margin: float = 0.0  # shape_sep units above the band's upper end and the null
    resamples: int = RESAMPLES
    q: float = 0.05  # FDR level of frac_significant


@dataclass(frozen=True)
class Notion:
    """One notion: the blocks-table column it reads, its control, and the column of its null."""

    name: str
    statistic: str
    control: str  # "chance" or "untrained"
    null: str  # the column holding the null's value the statistic must exceed (detectable: eta2_null)
    meaning: str

    def rule(self, rules: NotionRules) -> str:
        """The rule in words, with its thresholds (for meta.json and the README)."""
        onward = "first block in depth order from which, in it and every later block,"
        if self.name == "detectable":
            return (f"{onward} eta2_mean - eta2_null > {rules.min_excess} and frac_significant >= "
                    f"{rules.min_frac_significant} (control: chance, eta2_null = (K'-1)/(N-1))")
        margin = rules.magnitude_margin if self.name == "magnitude" else rules.shape_margin
        return (f"{onward} {self.statistic} exceeds by more than {margin} both the untrained network's band "
                f"(its largest value over the control seeds, {self.statistic}_untrained) and the permutation "
                f"null's 95th percentile over its relabellings ({self.null}); undetermined without either")


NOTIONS = (
    Notion("detectable", "eta2_mean", "chance", "eta2_null",
           "class information above chance: eta2 clearly above its null"),
    Notion("magnitude", "class_mod", "untrained", "class_mod_perm_q95",
           "class modulation in gate units above the untrained network's"),
    Notion("shape", "shape_sep", "untrained", "shape_sep_perm_q95",
           "class curves that are not shifted or scaled copies of the common curve, beyond the untrained network's"),
)
STATISTICS = ("eta2_mean", "eta2_null", "frac_significant", "class_mod", "shape_sep")  # what each resample computes
CERTAINTY = ("certainty: the share of draws, each a shard-bootstrap resample of the data held against one untrained "
             "seed (detectable: against chance), whose own onset is this block")


class Moments(Protocol):
    """What the resamples read from GateStats."""

    def moments(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def shift(self, name: str) -> torch.Tensor: ...


def resample_statistics(stats: Moments, gates: Sequence[str], weights: np.ndarray, q: float) -> dict[str, np.ndarray]:
    """STATISTICS of every gate (in the order given) in each shard-bootstrap resample, computed as
    the blocks table computes them for all the data: weights [R, S] (`resampling.shard_weights`) ->
    {statistic: [R, G]}, each centred on the all-data value (draw - mean of draws + all data).

    Centred, because a resample repeats shards, which adds noise that noise-driven statistics
    (shape_sep, class_mod, eta2) turn into an upward shift: uncentred, a block at its null would
    pass in most draws. The F tests of all resamples of a gate go through one p-value call.
    """
    raw = _layout_statistics(stats, gates, np.vstack([np.ones((1, weights.shape[1]), np.int64), weights]), q)
    return {k: v[1:] - v[1:].mean(0) + v[0] for k, v in raw.items()} if weights.shape[0] else \
        {k: v[1:] for k, v in raw.items()}


def _layout_statistics(stats: Moments, gates: Sequence[str], weights: np.ndarray, q: float) -> dict[str, np.ndarray]:
    """STATISTICS per row of shard weights [R, S] and gate: {statistic: [R, G]}."""
    r_count = weights.shape[0]
    out = {name: np.empty((r_count, len(gates))) for name in STATISTICS}
    for g, gate in enumerate(gates):
        count, total, total_sq = stats.moments(gate)
        shift = as_numpy(stats.shift(gate))
        f_rows, dfs = [], np.empty((r_count, 2))
        for r, moments in enumerate(resampled(count, total, total_sq, weights)):
            a = anova(*moments, shift)
            out["eta2_mean"][r, g] = float(eta_squared(a).mean())
            out["eta2_null"][r, g] = eta2_null(a.classes, a.n)
            out["class_mod"][r, g] = float(class_modulation(a).mean())
            out["shape_sep"][r, g] = profile_separation(a)[1]
            f, dfs[r, 0], dfs[r, 1] = f_statistic(a)
            f_rows.append(f)
        if r_count:
            p = f_p_value(np.stack(f_rows), dfs[:, :1], dfs[:, 1:])
            out["frac_significant"][:, g] = benjamini_hochberg(p, q).mean(-1)
    return out


def _passes(notion: Notion, rules: NotionRules, values: Mapping[str, np.ndarray], null: np.ndarray,
            band: np.ndarray | None) -> np.ndarray:
    """Whether each block passes: values [..., G] per statistic, null [G], band [..., G] (the
    untrained values it must exceed; broadcast against values) -> bool [..., G]."""
    if notion.name == "detectable":
        excess = values["eta2_mean"] - values["eta2_null"]
        return (excess > rules.min_excess) & (values["frac_significant"] >= rules.min_frac_significant)
    margin = rules.magnitude_margin if notion.name == "magnitude" else rules.shape_margin
    return values[notion.statistic] > np.maximum(null, band) + margin


def _missing(notion: Notion, blocks: pd.DataFrame, controls: np.ndarray | None) -> str | None:
    """Why the notion cannot be answered on this run, or None."""
    if notion.control == "untrained" and controls is None:
        return NO_CONTROL
    names = blocks["block"].to_numpy()
    for column, what in ((notion.statistic, notion.statistic), (notion.null, notion.null)):
        bad = blocks[column].isna().to_numpy()
        if bad.all() and column == notion.null:
            return "no permutation null (collected with permutations=0)"
        if bad.any():
            return f"{what} is NaN in {names[bad][0]}"
    if controls is not None and notion.control == "untrained" and np.isnan(controls).any():
        return f"the untrained control's {notion.statistic} is NaN in {names[np.isnan(controls).any(0)][0]}"
    return None


def _describe(notion: Notion, rules: NotionRules, seeds: Sequence[int], resamples: int) -> dict[str, Any]:
    return {"statistic": notion.statistic, "control": notion.control, "null": notion.null,
            "meaning": notion.meaning, "rule": notion.rule(rules), "certainty_rule": CERTAINTY,
            "resamples": resamples, "control_seeds": list(seeds) if notion.control == "untrained" else []}


def _at(blocks: pd.DataFrame, band: np.ndarray | None, notion: Notion, index: int) -> dict[str, Any]:
    """The statistic, its null and its untrained band [min, max] at the onset block."""
    if index >= len(blocks):
        return {"value": None, "null_value": None, "band": None}
    return {"value": float(blocks[notion.statistic].iloc[index]), "null_value": float(blocks[notion.null].iloc[index]),
            "band": None if band is None else [float(band[:, index].min()), float(band[:, index].max())]}


def answer(
    blocks: pd.DataFrame,
    draws: Mapping[str, np.ndarray],
    controls: Mapping[int, Mapping[str, np.ndarray]] | None,
    rules: NotionRules = NotionRules(),
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Per notion, its onset record (meta.json) and per block the share of draws in which the
    block passes (column `{notion}_share`, NaN when undetermined).

    blocks: the blocks table in depth order (point statistics, nulls); draws: `resample_statistics`
    [R, G] (R may be 0); controls: seed -> {statistic: [G]} of each untrained seed, None without.
    """
    names = blocks["block"].astype(str).tolist()
    seeds = sorted(controls) if controls else []
    resamples = next(iter(draws.values())).shape[0] if draws else 0
    shares, records = {}, {}
    for notion in NOTIONS:
        band = np.stack([np.asarray(controls[s][notion.statistic], dtype=float) for s in seeds]) if seeds else None
        described = _describe(notion, rules, seeds, resamples)
        reason = _missing(notion, blocks, band if notion.control == "untrained" else None)
        if reason is not None:
            records[notion.name] = {**undetermined(reason), **described, "value": None, "null_value": None, "band": None}
            shares[f"{notion.name}_share"] = np.full(len(names), math.nan)
            continue
        null = blocks[notion.null].to_numpy()
        point = {k: blocks[k].to_numpy() for k in STATISTICS}
        against = band if notion.control == "untrained" else None
        first = int(onset_index(_passes(notion, rules, point, null, None if against is None else against.max(0))))
        if resamples:
            values = {k: v[:, None, :] for k, v in draws.items()} if against is not None else draws
            passed = _passes(notion, rules, values, null, against)  # [R, J, G] or [R, G]
        elif against is not None:
            passed = _passes(notion, rules, point, null, against)  # the seeds alone: [J, G]
        else:
            passed = np.zeros((0, len(names)), dtype=bool)
        records[notion.name] = {**onset_record(first, onset_index(passed), names), **described,
                                **_at(blocks, band, notion, first)}
        flat = passed.reshape(-1, len(names))
        shares[f"{notion.name}_share"] = flat.mean(0) if flat.size else np.full(len(names), math.nan)
    return shares, records
