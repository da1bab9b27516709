"""Resampling the data by its shards: jackknife intervals of the channel-mean eta2, and the shard
bootstrap behind the notions' certainty and shape_sep's interval.

GateStats keeps its moments per disjoint shard of the data (shards chosen by a hash of the sample
id), so each leave-one-shard-out estimate is the totals minus one shard, and each bootstrap
resample a weighted sum of the shards, with no second pass over the data.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from scipy import stats as sps

from analysis.measures._arrays import Array, as_numpy, parallel
from analysis.measures.anova import anova, constant_floor, eta_squared

LEVEL = 0.95  # coverage of the jackknife intervals
# class x channel cells times resamples a run's shard bootstrap may take: each cell-resample is ~20
# float64 passes, so this is about a minute on two cores; at ImageNet scale (1000 x 15,104) that is
# 66 resamples instead of the default 400 (4.7 s per resample there on a shared 2-core machine).
RESAMPLE_BUDGET = 1e9
MIN_RESAMPLES = 50


def jackknife_interval(estimate: float, thetas: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """estimate +- t SE from S leave-one-out estimates thetas [S]: SE^2 = (S-1)/S sum (theta_s -
    mean theta)^2 and t the two-sided `level` quantile of Student's t with S-1 degrees of freedom
    (the jackknife SE has S-1; 1.96 would cover 87-89% with 8 shards). NaN when S < 2."""
    s = thetas.size
    if s < 2 or not np.isfinite(thetas).all():
        return math.nan, math.nan
    se = math.sqrt((s - 1) / s * float(((thetas - thetas.mean()) ** 2).sum()))
    t = float(sps.t.ppf(0.5 + level / 2, s - 1))
    return estimate - t * se, estimate + t * se


def eta2_jackknife(
    count: Array,
    total: Array,
    total_sq: Array,
    *,
    estimate: float | None = None,
    shift: Array | None = None,
    level: float = LEVEL,
    pooled_total: np.ndarray | None = None,
) -> tuple[float, float]:
    """Delete-one-shard jackknife interval (low, high) of the channel-mean eta2.

    theta_s is the channel-mean eta2 with shard s removed (totals minus shard s); SE^2 = (S-1)/S
    sum (theta_s - mean theta)^2; the interval is `estimate` (the all-data channel-mean eta2,
    computed when not given) +- t SE (`jackknife_interval`). NaN when S < 2 or a leave-one-out has
    fewer than 2 samples. count [S, K], total and total_sq [S, K, C] of x - shift (shift [C], None:
    0); `pooled_total` = total.sum(0) [K, C] when the caller has it (saves a pass over the shards).

    One pass over [K, C] per shard, shards on parallel threads: sum_k (T_k - t_sk)^2 / n_k is
    formed directly; the leave-one-out total sum of squares is sumsq - sum^2 / N (its rounding,
    ~1e-16 of sumsq, is inside `constant_floor`).
    """
    t = as_numpy(total).astype(np.float64, copy=False)
    t_all = t.sum(0) if pooled_total is None else pooled_total
    cnt = as_numpy(count).astype(np.float64)
    tq = as_numpy(total_sq).astype(np.float64, copy=False)
    s = t.shape[0]
    n_loo = cnt.sum(0) - cnt
    if s < 2 or bool((n_loo.sum(1) < 2).any()):
        return math.nan, math.nan
    if estimate is None:
        estimate = float(eta_squared(anova(cnt.sum(0), t_all, tq.sum(0), shift)).mean())
    w = np.divide(1.0, n_loo, out=np.zeros_like(n_loo), where=n_loo > 0)

    def leave_out(shards: np.ndarray) -> np.ndarray:
        """[len(shards), 3, C]: sum_k (T_k - t_sk)^2 / n_k, sum_k t_sk, sum_k tq_sk."""
        out, d = np.empty((shards.size, 3, t.shape[2])), np.empty_like(t_all)
        for j, i in enumerate(shards):
            np.subtract(t_all, t[i], out=d)
            d *= d
            out[j] = np.einsum("k,kc->c", w[i], d), t[i].sum(0), tq[i].sum(0)
        return out

    sums = np.concatenate(parallel(leave_out, s))
    mean_sq, shard_t, shard_tq = sums[:, 0], sums[:, 1], sums[:, 2]
    grand_sq = (shard_t.sum(0) - shard_t) ** 2 / n_loo.sum(1, keepdims=True)
    raw = shard_tq.sum(0) - shard_tq
    ss_between = np.maximum(mean_sq - grand_sq, 0.0)
    ss_total = np.maximum(raw - grand_sq, 0.0)
    n_out = n_loo.sum(1, keepdims=True)
    mean = (shard_t.sum(0) - shard_t) / n_out + (0.0 if shift is None else as_numpy(shift))
    constant = ss_total <= constant_floor(n_out, mean, raw)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(constant, 0.0, np.minimum(ss_between / ss_total, 1.0)).mean(1)
    return jackknife_interval(estimate, theta, level)


def resample_count(requested: int, cells: int) -> int:
    """The resamples a run of `cells` class x channel cells gets: `requested`, fewer where it would
    exceed RESAMPLE_BUDGET, never fewer than MIN_RESAMPLES (nor more than requested)."""
    return min(requested, max(MIN_RESAMPLES, int(RESAMPLE_BUDGET // max(cells, 1))))


def shard_weights(shards: int, resamples: int, seed: int) -> np.ndarray:
    """[R, S] int64: how often each of S shards enters each of R bootstrap resamples (S draws with
    replacement), seeded, so that a run's resamples are reproducible. The same weights serve every
    block: a resample is one redraw of the whole data, which the onset (a run of blocks) needs."""
    if shards < 2 or resamples < 1:
        return np.zeros((0, shards), dtype=np.int64)
    rng = np.random.default_rng([seed, shards, resamples])
    return rng.multinomial(shards, np.full(shards, 1.0 / shards), size=resamples)


def resampled(count: Array, total: Array, total_sq: Array, weights: np.ndarray) -> Iterator[tuple[np.ndarray, ...]]:
    """(count [K], total [K, C], total_sq [K, C]) of each resample in turn: the shards' moments
    (count [S, K], total and total_sq [S, K, C]) weighted by one row of `weights` [R, S]."""
    cnt = as_numpy(count).astype(np.float64)
    # contiguous once: tensordot would copy a strided view (GateStats' fields share one buffer) per call
    t, tq = (np.ascontiguousarray(as_numpy(x), dtype=np.float64) for x in (total, total_sq))
    for w in weights.astype(np.float64):
        yield w @ cnt, np.tensordot(w, t, 1), np.tensordot(w, tq, 1)


def bootstrap_interval(draws: np.ndarray, shards: int, level: float = LEVEL) -> tuple[float, float]:
    """The expanded percentile interval of a shard bootstrap's draws [R] (Hesterberg 2015): the
    quantiles at Phi(-sqrt(S/(S-1)) t) and its complement, t the two-sided `level` quantile of
    Student's t with S-1 degrees of freedom, instead of (1 -+ level) / 2. Plain percentiles over
    S = 8 resampling units are too narrow (the bootstrap variance is (S-1)/S of the variance and
    ignores that it is estimated from S units); expanded, they cover like the t interval for a mean,
    and keep the percentile interval's skew, which a ratio with a small denominator needs (the
    jackknife's symmetric interval went below 1 where an image bootstrap gave 13, issue 23). NaN
    with fewer than 2 shards, no draws, or a NaN draw."""
    if shards < 2 or draws.size == 0 or not np.isfinite(draws).all():
        return math.nan, math.nan
    t = float(sps.t.ppf(0.5 + level / 2, shards - 1))
    tail = float(sps.norm.cdf(-math.sqrt(shards / (shards - 1)) * t))
    low, high = np.quantile(draws, [tail, 1 - tail])
    return float(low), float(high)
