"""The tables a run folder stores, built from GateStats; their columns are in `schema`.

Inputs, per gate, as CPU tensors (K classes, C channels, S shards, P relabellings, B bins), read
from GateStats (`capture.stats`):

* `count [S, K]` int64, `sum [S, K, C]` and `sumsq [S, K, C]` float64: moments of x - shift per
  shard and class, `shift [C]`; counts and sums under P pseudo-labellings (`perm_moments`);
* `hist [K, C, B + 2]` int64: counts over each channel's own bins, with under- and overflow;
* `saturation`: exact counts of gates >= 0.9 and <= 0.1 per class and channel;
* reservoir `values [n, C]` float32 with `labels [n]`, `ids [n]` int64: up to R whole gate vectors
  per class;
* `stats.inputs`: the same for the squeeze inputs z of each SE block; `controls`: the blocks
  tables of the untrained network per weight seed (the controls' own run tables).

At ImageNet scale (K = 1000, 15k channels in 16 blocks) channel_table + block_table took under 5 s
on two cores before the logistic probe (bench/metrics_scale.py); the big passes run on as many
threads as `torch.get_num_threads()`, the probe on the statistics' device.

    tables, onset = run_tables(stats, controls={1: run_tables(untrained_stats)[0]["blocks"]})
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from analysis.capture.config import StatsConfig
from analysis.measures._arrays import as_numpy
from analysis.measures.anova import (
    Anova,
    anova,
    class_modulation,
    constant_floor,
    epsilon_squared,
    eta2_null,
    eta_squared,
    f_test,
)
from analysis.measures.information import mutual_information_bits
from analysis.measures.notions import NULL_QUANTILE, NotionRules, answer, resample_statistics
from analysis.measures.permutation import Null, permutation_null, permutation_p
from analysis.measures.probe import PROBE_MAX_CLASSES, Probe, control_labels, ncm_probe, probe
from analysis.measures.profiles import mean_pairwise_cosine, profile_separation, profile_split, selectivity
from analysis.measures.resampling import bootstrap_interval, eta2_jackknife, resample_count, shard_weights
from analysis.measures.schema import validate
from analysis.measures.testing import benjamini_hochberg


class GateLike(Protocol):
    """What the tables read from a gate description."""

    name: str
    depth: int
    path: str
    channels: int


class StatsLike(Protocol):
    """What the tables read from GateStats (see its methods); tensors come back on the CPU."""

    gates: Sequence[GateLike]
    class_names: Sequence[str]
    config: StatsConfig
    inputs: StatsLike | None

    def moments(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def shift(self, name: str) -> torch.Tensor: ...

    def perm_moments(self, name: str) -> tuple[torch.Tensor, torch.Tensor]: ...

    def histogram(self, name: str) -> tuple[torch.Tensor, torch.Tensor]: ...

    def saturation(self, name: str) -> tuple[torch.Tensor, torch.Tensor]: ...

    def reservoir(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


def _ordered_gates(stats: StatsLike) -> list[GateLike]:
    """Gates in forward (depth) order, the order of every table."""
    return sorted(stats.gates, key=lambda g: g.depth)


def _moments(stats: StatsLike, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(count [S, K] int64, sum [S, K, C], sumsq [S, K, C] of x - shift, shift [C] float64) of one gate."""
    count, total, total_sq = (as_numpy(m) for m in stats.moments(name))
    return count, total, total_sq, as_numpy(stats.shift(name))


def _totals(stats: StatsLike, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(count [K], sum [K, C], sumsq [K, C] of x - shift, shift [C]) of one gate, summed over shards."""
    count, total, total_sq, shift = _moments(stats, name)
    return count.sum(0), total.sum(0), total_sq.sum(0), shift


def _anova(stats: StatsLike, name: str) -> Anova:
    """The one-way layout of one gate over all shards."""
    return anova(*_totals(stats, name))


def _gate_channels(stats: StatsLike, gate: GateLike, q: float) -> pd.DataFrame:
    """Channel table rows of one gate."""
    n_k, t, _, shift = _totals(stats, gate.name)
    a = _anova(stats, gate.name)
    f, p = f_test(a)
    present = n_k > 0
    preferred = np.where(present[:, None], a.means, -np.inf).argmax(0)
    preferred[a.constant] = present.argmax()
    sel = selectivity(a.means[present])
    sel[a.constant] = 0.0
    c = t.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        sat_high, sat_low = (as_numpy(counts).sum(0) / a.n for counts in stats.saturation(gate.name))
        mean = shift + t.sum(0) / a.n
        std = np.sqrt((a.ss_between + a.ss_within) / a.n)
    return pd.DataFrame(
        {
            "block": gate.name,
            "depth": np.full(c, gate.depth, dtype=np.int64),
            "channel": np.arange(c, dtype=np.int64),
            "eta2": eta_squared(a),
            "eps2": epsilon_squared(a),
            "class_mod": class_modulation(a),
            "F": f,
            "p_value": p,
            "significant": benjamini_hochberg(p, q),
            "selectivity": sel,
            "mi_bits": mutual_information_bits(stats.histogram(gate.name)[0]),
            "preferred_class": preferred.astype(np.int64),
            "preferred_class_name": np.asarray(stats.class_names, dtype=object)[preferred],
            "mean": mean,
            "std": std,
            "sat_high": sat_high,
            "sat_low": sat_low,
        }
    )


def channel_table(stats: StatsLike, *, q: float = 0.05) -> pd.DataFrame:
    """One row per (gate, channel), gates in depth order; columns in `schema.TABLES["channels"]`."""
    table = pd.concat([_gate_channels(stats, g, q) for g in _ordered_gates(stats)], ignore_index=True)
    validate("channels", table)
    return table


def _squeeze(stats: StatsLike | None, name: str, probe_args: dict[str, Any]) -> dict[str, float]:
    """eta2 (block mean) and probe accuracy of one gate of the squeeze inputs `stats`; NaN where
    `stats` is None or lacks the gate."""
    if stats is None or name not in {g.name for g in stats.gates}:
        return {"eta2_mean": math.nan, "probe": math.nan}
    values, labels, _ = stats.reservoir(name)
    return {"eta2_mean": float(eta_squared(_anova(stats, name)).mean()), "probe": probe(values, labels, **probe_args).accuracy}


def control_statistics(blocks: Mapping[int, pd.DataFrame], gates: Sequence[str]) -> dict[int, dict[str, np.ndarray]]:
    """Per untrained seed, its eta2_mean, class_mod, shape_sep and probe accuracy per gate [G], in
    the order of `gates`, read from that control's own blocks table (NaN for a gate it lacks): the
    band the notions hold the trained values against."""
    columns = {"eta2_mean": "eta2_mean", "class_mod": "class_mod", "shape_sep": "shape_sep", "probe": "probe_acc"}
    out = {}
    for seed, table in blocks.items():
        indexed = table.set_index(table["block"].astype(str))
        out[seed] = {key: indexed[column].reindex(list(gates)).to_numpy(dtype=float) for key, column in columns.items()}
    return out


def _probes(stats: StatsLike, name: str, probe_args: dict[str, Any]) -> dict[str, float]:
    """The logistic probe, its control task on the labels dealt out again and the nearest-class-mean probe;
    NaN when the statistics kept no reservoir (the untrained controls, `capture.collect.control_config`)."""
    if not stats.config.keeps("reservoir"):
        return dict.fromkeys(("probe_acc", "probe_chance", "probe_p", "probe_perm", "probe_perm_chance",
                              "probe_selectivity", "probe_per_class", "probe_ncm"), math.nan)
    values, labels, ids = stats.reservoir(name)
    pr: Probe = probe(values, labels, **probe_args)
    control = probe(values, control_labels(labels, ids, stats.config.seed), **probe_args)
    perm = control.accuracy
    ncm_args = {k: v for k, v in probe_args.items() if k != "device"}
    return {
        "probe_acc": pr.accuracy,
        "probe_chance": pr.chance,
        "probe_p": pr.p_value,
        "probe_perm": perm,
        "probe_perm_chance": control.chance,
        "probe_selectivity": pr.accuracy - perm,
        "probe_per_class": pr.per_class,
        "probe_ncm": ncm_probe(values, labels, **ncm_args).accuracy,
    }


def _shape(stats: StatsLike, name: str, a: Anova, shape_draws: np.ndarray) -> dict[str, Any]:
    """profile_sep, shape_sep with its shard-bootstrap interval (draws [R]), the affine share, and
    the permutation null (NaN without relabellings)."""
    profile_sep, shape_sep = profile_separation(a)
    low, high = bootstrap_interval(shape_draws, stats.config.shards)
    shift = _moments(stats, name)[3]
    empty = np.empty(0)
    null = permutation_null(*stats.perm_moments(name), shift, a) if stats.config.keeps("null") else \
        Null(empty, empty, empty)
    nan_mean = (lambda x: float(x.mean()) if x.size else math.nan)
    nan_max = (lambda x: float(x.max()) if x.size else math.nan)
    q95 = (lambda x: float(np.quantile(x, NULL_QUANTILE)) if x.size else math.nan)
    return {
        "profile_sep": profile_sep,
        "shape_sep": shape_sep,
        "shape_sep_ci_low": low,
        "shape_sep_ci_high": high,
        "affine_r2": profile_split(a).affine_r2,
        "shape_sep_perm": nan_mean(null.shape_sep),
        "shape_sep_perm_max": nan_max(null.shape_sep),
        "shape_sep_perm_q95": q95(null.shape_sep),
        "class_mod_perm_q95": q95(null.class_mod),
        "_null_eta2": null.eta2,
    }


def _band(values: Mapping[int, Mapping[str, np.ndarray]] | None, statistic: str, g: int) -> tuple[float, float]:
    """(lowest, largest) of one statistic of gate index g over the untrained seeds; NaN without."""
    found = [float(v[statistic][g]) for v in (values or {}).values()]
    return (min(found), max(found)) if found else (math.nan, math.nan)


# long: one row of the block table, its columns listed once in the order of the schema
def _block_row(
    stats: StatsLike, gate: GateLike, g: int, ch: pd.DataFrame, *, q: float, probe_args: dict[str, Any],
    controls: Mapping[int, Mapping[str, np.ndarray]] | None, shape_draws: np.ndarray,
) -> dict[str, Any]:
    """Block table row of one gate (index g in depth order, without rel_depth) from its channel rows,
    moments, reservoir, resampled shape_sep [R] and the untrained seeds' values."""
    count, total, total_sq, shift = _moments(stats, gate.name)
    n_k, t = count.sum(0), total.sum(0)
    n, k_present, c = float(n_k.sum()), int((n_k > 0).sum()), t.shape[1]
    a = _anova(stats, gate.name)
    present = n_k > 0
    eta2_mean = float(ch["eta2"].mean())
    null = eta2_null(k_present, n)
    ci_low, ci_high = eta2_jackknife(count, total, total_sq, estimate=eta2_mean, shift=shift, pooled_total=t)
    shape = _shape(stats, gate.name, a, shape_draws)
    null_eta2 = shape.pop("_null_eta2")
    band = {key: _band(controls, key, g) for key in ("eta2_mean", "class_mod", "shape_sep", "probe")}
    squeeze = _squeeze(stats.inputs, gate.name, probe_args)
    means, stds = ch["mean"].to_numpy(), ch["std"].to_numpy()
    gate_mean = float(means.mean())
    return {
        "block": gate.name,
        "depth": gate.depth,
        "path": gate.path,
        "channels": c,
        "samples": int(n),
        "classes": k_present,
        "eta2_mean": eta2_mean,
        "eta2_null": null,
        "eta2_excess": eta2_mean - null,
        "eta2_ci_low": ci_low,
        "eta2_ci_high": ci_high,
        "eps2_mean": float(ch["eps2"].mean()),
        "class_mod": float(ch["class_mod"].mean()),
        "class_mod_perm_q95": shape.pop("class_mod_perm_q95"),
        "class_mod_untrained": band["class_mod"][1],
        "class_mod_untrained_low": band["class_mod"][0],
        "eta2_perm": float(null_eta2.mean()) if null_eta2.size else math.nan,
        "perm_p": permutation_p(eta2_mean, null_eta2),
        "eta2_untrained": band["eta2_mean"][1],
        "eta2_untrained_low": band["eta2_mean"][0],
        "eta2_z": squeeze["eta2_mean"],
        **shape,
        "shape_sep_untrained": band["shape_sep"][1],
        "shape_sep_untrained_low": band["shape_sep"][0],
        "frac_significant": float(benjamini_hochberg(ch["p_value"].to_numpy(), q).mean()),
        "selectivity_median": float(ch["selectivity"].median()),
        "mi_bits_mean": float(ch["mi_bits"].mean()),
        "class_cosine_mean": mean_pairwise_cosine(a.means[present]),
        "class_corr_mean": mean_pairwise_cosine(a.means[present], centre=True),
        **_probes(stats, gate.name, probe_args),
        "probe_untrained": band["probe"][1],
        "probe_z": squeeze["probe"],
        "sat_high": float(ch["sat_high"].mean()),
        "sat_low": float(ch["sat_low"].mean()),
        "gate_mean": gate_mean,
        "gate_std": math.sqrt(float((stds**2 + (means - gate_mean) ** 2).mean())),
    }


def _draws(stats: StatsLike, gates: Sequence[GateLike], resamples: int, q: float) -> dict[str, np.ndarray]:
    """The notions' statistics in each shard-bootstrap resample of `stats` ([R, G] each), seeded by
    the statistics' own seed; fewer resamples than asked at scale (`resampling.resample_count`)."""
    cells = len(stats.config.present) * sum(g.channels for g in gates)
    weights = shard_weights(stats.config.shards, resample_count(resamples, cells), stats.config.seed)
    return resample_statistics(stats, [g.name for g in gates], weights, q)


def block_table(
    stats: StatsLike,
    *,
    controls: Mapping[int, Mapping[str, np.ndarray]] | None = None,
    draws: Mapping[str, np.ndarray] | None = None,
    rules: NotionRules = NotionRules(),
    probe_folds: int = 5,
    seed: int = 0,
    probe_max_classes: int | None = PROBE_MAX_CLASSES,
    channels: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per gate in depth order; columns in `schema.TABLES["blocks"]`.

    `controls`: the untrained seeds' statistics (`control_statistics`; the *_untrained columns are
    their band, NaN without). `draws`: the shard-bootstrap resamples of the notions' statistics
    (`notions.resample_statistics`; computed with `rules.resamples` when not given) behind
    shape_sep's interval and the notions' per-block shares (`rules`). Pass
    `channels=channel_table(stats)` when it is at hand: the block table is built from it and the
    moments and reservoirs only (the histograms are not read again); significance is redone at
    `rules.q` from its p-values.
    """
    gates = _ordered_gates(stats)
    q = rules.q
    if channels is None:
        channels = channel_table(stats, q=q)
    if draws is None:
        draws = _draws(stats, gates, rules.resamples, q)
    by_block = dict(tuple(channels.groupby("block", sort=False, observed=True)))
    probe_args = _probe_args(stats, probe_folds, seed, probe_max_classes)
    rows = [
        _block_row(stats, gate, g, by_block[gate.name].sort_values("channel"), q=q, probe_args=probe_args,
                   controls=controls, shape_draws=draws["shape_sep"][:, g])
        for g, gate in enumerate(gates)
    ]
    table = pd.DataFrame(rows)
    table.insert(2, "rel_depth", table["depth"] / len(gates))
    for column, share in answer(table, draws, controls, rules)[0].items():
        table[column] = share
    validate("blocks", table)
    return table


def _probe_args(stats: StatsLike, folds: int, seed: int, max_classes: int | None) -> dict[str, Any]:
    return {"folds": folds, "seed": seed, "max_classes": max_classes, "device": getattr(stats, "device", None)}


def class_mean_table(stats: StatsLike) -> pd.DataFrame:
    """Long-form class means: one row per (gate, class with samples, channel), built from arrays.

    At ImageNet scale this is 15M rows, so the float columns are written in place into arrays sized
    by a first look at the class counts, and the frame takes them without a copy.
    """
    gates = _ordered_gates(stats)
    names, name_code = np.unique(np.asarray(stats.class_names, dtype=str), return_inverse=True)
    layout = []  # per gate: (classes with samples, their counts, channels)
    for gate in gates:
        n_k, total, _, _ = _totals(stats, gate.name)
        present = np.flatnonzero(n_k > 0)
        layout.append((present, n_k[present], total.shape[-1]))
    edges = np.cumsum([0] + [p.size * c for p, _, c in layout])
    mean, std = np.empty(edges[-1]), np.empty(edges[-1])
    for i, gate in enumerate(gates):
        present, n, c = layout[i]
        _, t, tq, shift = _totals(stats, gate.name)
        t, tq, n = t[present], tq[present], n[:, None].astype(np.float64)
        m = np.divide(t, n, out=mean[edges[i] : edges[i + 1]].reshape(-1, c))
        ss = np.maximum(tq - t * m, 0.0)
        ss[ss <= constant_floor(n, m + shift, tq)] = 0.0
        m += shift
        np.sqrt(ss / n, out=std[edges[i] : edges[i + 1]].reshape(-1, c))
    classes = np.concatenate([np.repeat(p.astype(np.int32), c) for p, _, c in layout])
    table = pd.DataFrame(
        {
            "block": pd.Categorical.from_codes(
                np.repeat(np.arange(len(gates), dtype=np.int32), np.diff(edges)), categories=[g.name for g in gates]
            ),
            "class": classes,
            "class_name": pd.Categorical.from_codes(name_code[classes], categories=names),
            "channel": np.concatenate([np.tile(np.arange(c, dtype=np.int32), p.size) for p, _, c in layout]),
            "mean": mean,
            "std": std,
            "count": np.concatenate([np.repeat(n.astype(np.int64), c) for _, n, c in layout]),
        },
        copy=False,  # the arrays are ours: no 15M-row copy into consolidated blocks
    )
    validate("class_means", table)
    return table


def run_tables(
    stats: StatsLike,
    *,
    controls: Mapping[int, pd.DataFrame] | None = None,
    rules: NotionRules = NotionRules(),
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Every table a run folder stores, by name, and the meta.json "onset" entry.

    `controls`: the blocks table of the untrained network per weight seed (each control's own
    `run_tables`; analysis.models.controls), the band the notions magnitude and shape need; without
    them those are undetermined. The onset entry holds
    `notions` (analysis.measures.notions: per notion its onset block, status, certainty and rule),
    and, as before issue 23, `block` and `rule` (shape) and `detectable` and `rule_detectable`.
    The blocks table gets each notion's per-block share of passing draws (`{notion}_share`).
    """
    gates = _ordered_gates(stats)
    channels = channel_table(stats, q=rules.q)
    draws = _draws(stats, gates, rules.resamples, rules.q)
    values = control_statistics(controls, [g.name for g in gates]) if controls else None
    blocks = block_table(stats, controls=values, draws=draws, rules=rules, channels=channels)
    notions = answer(blocks, draws, values, rules)[1]
    tables = {"blocks": blocks, "channels": channels, "class_means": class_mean_table(stats)}
    onset = {
        "block": notions["shape"]["block"],
        "rule": notions["shape"]["rule"],
        "detectable": notions["detectable"]["block"],
        "rule_detectable": notions["detectable"]["rule"],
        "notions": notions,
        "min_excess": rules.min_excess,
        "thresholds": asdict(rules),
    }
    return tables, onset


@dataclass(frozen=True)
class Tables:
    """A run's tables held in memory, as `tables(stats)` computes them (a Run reads the same from its folder)."""

    blocks: pd.DataFrame
    channels: pd.DataFrame
    class_means: pd.DataFrame
    onset: dict[str, Any]  # meta.json's "onset" entry: `onset["block"]` is the onset block, with its rules


def control_tables(stats: StatsLike, rules: NotionRules = NotionRules()) -> dict[str, dict[int, tuple[dict[str, pd.DataFrame], dict[str, Any]]]]:
    """Each control collected beside `stats` (`stats.controls`, kind -> weight seed -> statistics)
    as its own `run_tables`: kind -> seed -> (tables, onset), seeds in order."""
    return {kind: {seed: run_tables(found, rules=rules) for seed, found in sorted(by_seed.items())}
            for kind, by_seed in getattr(stats, "controls", {}).items()}


def untrained_band(controls: Mapping[str, Mapping[int, tuple[dict[str, pd.DataFrame], Any]]]) -> dict[int, pd.DataFrame] | None:
    """The untrained seeds' blocks tables (`control_tables`), the band `run_tables` holds a run
    against; None without an untrained control."""
    return {seed: found[0]["blocks"] for seed, found in controls.get("untrained", {}).items()} or None


def tables(stats: StatsLike, *, rules: NotionRules = NotionRules()) -> Tables:
    """Every table of `stats` without writing anything (`run_tables` as one object, for a notebook),
    held against the untrained controls `collect(..., control="untrained")` put beside it."""
    found, onset = run_tables(stats, controls=untrained_band(control_tables(stats, rules)), rules=rules)
    return Tables(found["blocks"], found["channels"], found["class_means"], onset)
