"""The tables a run folder stores, built from GateStats; their columns are in `schema`.

Inputs, per gate, as CPU tensors (K classes, C channels, S shards, B bins), read through
`StatsLike` (what GateStats offers):

* `count [S, K]` int64, `sum [S, K, C]` and `sumsq [S, K, C]` float64: moments per shard and class;
* `hist [K, C, B]` int64 (any integer dtype): counts over B equal-width bins on [0, 1];
* reservoir `values [n, C]` float32 with `labels [n]` int64: up to R whole gate vectors per class.

At ImageNet scale (K = 1000, 15k channels in 16 blocks) channel_table + block_table take under 5 s
on two cores (bench/metrics_scale.py); the big passes run on as many threads as
`torch.get_num_threads()`.

    tables, onset = run_tables(stats)       # {"blocks": ..., "channels": ..., "class_means": ...}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch

from analysis.measures._arrays import as_numpy
from analysis.measures.anova import CONSTANT_RTOL, anova, eta2_null, eta_squared, f_test
from analysis.measures.information import histogram_pass
from analysis.measures.onset import ONSET_MIN_EXCESS, ONSET_RULE, find_onset
from analysis.measures.probe import PROBE_MAX_CLASSES, probe
from analysis.measures.profiles import mean_pairwise_cosine, selectivity
from analysis.measures.resampling import eta2_jackknife
from analysis.measures.schema import validate
from analysis.measures.testing import benjamini_hochberg


class GateLike(Protocol):
    """What the tables read from a gate description."""

    name: str
    depth: int
    path: str


class StatsLike(Protocol):
    """What the tables read from GateStats; tensors come back on the CPU."""

    gates: Sequence[GateLike]
    num_classes: int
    class_names: Sequence[str]

    def moments(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def shift(self, name: str) -> torch.Tensor: ...

    def histogram(self, name: str) -> tuple[torch.Tensor, torch.Tensor]: ...

    def saturation(self, name: str) -> tuple[torch.Tensor, torch.Tensor]: ...

    def reservoir(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


def _ordered_gates(stats: StatsLike) -> list[GateLike]:
    """Gates in forward (depth) order, the order of every table."""
    return sorted(stats.gates, key=lambda g: g.depth)


def _raw_moments(stats: StatsLike, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count [S, K], sum [S, K, C], sumsq [S, K, C]) of the gate values themselves, from the
    moments of s - shift that GateStats keeps."""
    count, total, total_sq = (as_numpy(m) for m in stats.moments(name))
    d, n = as_numpy(stats.shift(name)), count[..., None].astype(np.float64)
    return count, total + n * d, total_sq + 2 * d * total + n * d * d


def _totals(stats: StatsLike, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count [K], sum [K, C], sumsq [K, C]) of one gate, summed over shards."""
    count, total, total_sq = _raw_moments(stats, name)
    return count.sum(0), total.sum(0), total_sq.sum(0)


def _gate_channels(stats: StatsLike, gate: GateLike, q: float) -> pd.DataFrame:
    """Channel table rows of one gate."""
    n_k, t, tq = _totals(stats, gate.name)
    a = anova(n_k, t, tq)
    f, p = f_test(a)
    present = n_k > 0
    preferred = np.where(present[:, None], a.means, -np.inf).argmax(0)
    preferred[a.constant] = present.argmax()
    sel = selectivity(a.means[present])
    sel[a.constant] = 0.0
    mi, _ = histogram_pass(stats.histogram(gate.name)[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        sat_high, sat_low = (as_numpy(x).sum(0) / n_k.sum() for x in stats.saturation(gate.name))
    c = t.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = t.sum(0) / a.n
        std = np.sqrt((a.ss_between + a.ss_within) / a.n)
    return pd.DataFrame(
        {
            "block": gate.name,
            "depth": np.full(c, gate.depth, dtype=np.int64),
            "channel": np.arange(c, dtype=np.int64),
            "eta2": eta_squared(a),
            "F": f,
            "p_value": p,
            "significant": benjamini_hochberg(p, q),
            "selectivity": sel,
            "mi_bits": mi,
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


def _block_row(
    stats: StatsLike, gate: GateLike, ch: pd.DataFrame, *, q: float, probe_args: dict[str, Any]
) -> dict[str, Any]:
    """Block table row of one gate (without rel_depth) from its channel rows, moments and reservoir."""
    count, total, total_sq = _raw_moments(stats, gate.name)
    total = total.astype(np.float64, copy=False)
    n_k, t = count.sum(0), total.sum(0)
    n, k_present, c = float(n_k.sum()), int((n_k > 0).sum()), t.shape[1]
    eta2_mean = float(ch["eta2"].mean())
    null = eta2_null(k_present, n)
    ci_low, ci_high = eta2_jackknife(count, total, total_sq, estimate=eta2_mean, pooled_total=t)
    present = n_k > 0
    profiles = t[present] / n_k[present, None]
    values, labels, _ = stats.reservoir(gate.name)
    pr = probe(values, labels, **probe_args)
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
        "frac_significant": float(benjamini_hochberg(ch["p_value"].to_numpy(), q).mean()),
        "selectivity_median": float(ch["selectivity"].median()),
        "mi_bits_mean": float(ch["mi_bits"].mean()),
        "class_cosine_mean": mean_pairwise_cosine(profiles),
        "class_corr_mean": mean_pairwise_cosine(profiles, centre=True),
        "probe_acc": pr.accuracy,
        "probe_chance": pr.chance,
        "probe_p": pr.p_value,
        "sat_high": float(ch["sat_high"].mean()),
        "sat_low": float(ch["sat_low"].mean()),
        "gate_mean": gate_mean,
        "gate_std": math.sqrt(float((stds**2 + (means - gate_mean) ** 2).mean())),
    }


def block_table(
    stats: StatsLike,
    *,
    q: float = 0.05,
    probe_folds: int = 5,
    seed: int = 0,
    probe_max_classes: int | None = PROBE_MAX_CLASSES,
    channels: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per gate in depth order; columns in `schema.TABLES["blocks"]`.

    Pass `channels=channel_table(stats)` when it is at hand: the block table is built from it and
    the moments and reservoirs only (the histograms are not read again); significance is redone at
    this `q` from its p-values.
    """
    gates = _ordered_gates(stats)
    if channels is None:
        channels = channel_table(stats, q=q)
    by_block = dict(tuple(channels.groupby("block", sort=False, observed=True)))
    probe_args = {"folds": probe_folds, "seed": seed, "max_classes": probe_max_classes}
    rows = [_block_row(stats, g, by_block[g.name].sort_values("channel"), q=q, probe_args=probe_args) for g in gates]
    table = pd.DataFrame(rows)
    table.insert(2, "rel_depth", table["depth"] / len(gates))
    validate("blocks", table)
    return table


def class_mean_table(stats: StatsLike) -> pd.DataFrame:
    """Long-form class means: one row per (gate, class with samples, channel), built from arrays.

    At ImageNet scale this is 15M rows, so the float columns are written in place into arrays sized
    by a first look at the class counts, and the frame takes them without a copy.
    """
    gates = _ordered_gates(stats)
    names, name_code = np.unique(np.asarray(stats.class_names, dtype=str), return_inverse=True)
    layout = []  # per gate: (classes with samples, their counts, channels)
    for gate in gates:
        count, total, _ = stats.moments(gate.name)
        n_k = as_numpy(count).sum(0)
        present = np.flatnonzero(n_k > 0)
        layout.append((present, n_k[present], total.shape[-1]))
    edges = np.cumsum([0] + [p.size * c for p, _, c in layout])
    mean, std = np.empty(edges[-1]), np.empty(edges[-1])
    for i, gate in enumerate(gates):
        present, n, c = layout[i]
        _, t, tq = _totals(stats, gate.name)
        t, tq, n = t[present], tq[present], n[:, None].astype(np.float64)
        m = np.divide(t, n, out=mean[edges[i] : edges[i + 1]].reshape(-1, c))
        ss = np.maximum(tq - t * m, 0.0)
        ss[ss <= CONSTANT_RTOL * tq] = 0.0
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


def run_tables(stats: StatsLike, min_excess: float | None = None) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Every table a run folder stores, by name, and the meta.json "onset" entry (block, rule in
    words, min_excess). `min_excess` sets the onset rule's effect size (default ONSET_MIN_EXCESS)."""
    min_excess = ONSET_MIN_EXCESS if min_excess is None else min_excess
    channels = channel_table(stats)
    blocks = block_table(stats, channels=channels)
    tables = {"blocks": blocks, "channels": channels, "class_means": class_mean_table(stats)}
    onset = {"block": find_onset(blocks, min_excess=min_excess), "rule": ONSET_RULE, "min_excess": min_excess}
    return tables, onset
