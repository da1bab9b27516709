"""Delete-one-shard jackknife intervals of the channel-mean eta2.

GateStats keeps its moments per disjoint shard of the data (shards chosen by a hash of the sample
id), so each leave-one-shard-out estimate is the totals minus one shard, with no second pass.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from analysis.measures._arrays import Array, as_numpy, parallel
from analysis.measures.anova import anova, constant_floor, eta_squared
from analysis.measures.profiles import profile_separation

LEVEL = 0.95  # coverage of the jackknife intervals


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


def shape_sep_jackknife(
    count: Array, total: Array, shift: Array, *, estimate: float, level: float = LEVEL
) -> tuple[float, float]:
    """Delete-one-shard jackknife interval (low, high) of shape_sep (`profiles.profile_separation`)
    from the leave-one-shard-out class means; count [S, K], total [S, K, C] of x - shift [C]."""
    cnt, t = as_numpy(count).astype(np.float64), as_numpy(total).astype(np.float64, copy=False)
    n_loo, t_loo = cnt.sum(0) - cnt, t.sum(0) - t
    theta = np.empty(cnt.shape[0])
    for s in range(cnt.shape[0]):
        kept = n_loo[s] > 0
        theta[s] = profile_separation(t_loo[s][kept] / n_loo[s][kept, None] + as_numpy(shift))[1]
    return jackknife_interval(estimate, theta, level)
