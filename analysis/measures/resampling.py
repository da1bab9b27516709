"""Delete-one-shard jackknife intervals of the channel-mean eta2.

GateStats keeps its moments per disjoint shard of the data (shards chosen by a hash of the sample
id), so each leave-one-shard-out estimate is the totals minus one shard, with no second pass.
"""

from __future__ import annotations

import math

import numpy as np

from analysis.measures._arrays import Array, as_numpy, parallel
from analysis.measures.anova import CONSTANT_RTOL, anova, eta_squared

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def eta2_jackknife(
    count: Array,
    total: Array,
    total_sq: Array,
    *,
    estimate: float | None = None,
    z: float = Z95,
    pooled_total: np.ndarray | None = None,
) -> tuple[float, float]:
    """Delete-one-shard jackknife interval (low, high) of the channel-mean eta2.

    theta_s is the channel-mean eta2 with shard s removed (totals minus shard s); SE^2 = (S-1)/S
    sum (theta_s - mean theta)^2; the interval is `estimate` (the all-data channel-mean eta2,
    computed when not given) +- z SE. NaN when S < 2 or a leave-one-out has fewer than 2 samples.
    count [S, K], total and total_sq [S, K, C]; `pooled_total` = total.sum(0) [K, C] when the
    caller has it (saves a pass over the shards).

    One pass over [K, C] per shard, shards on parallel threads: sum_k (T_k - t_sk)^2 / n_k is
    formed directly; the leave-one-out total sum of squares is sumsq - sum^2 / N (its rounding,
    ~1e-16 of sumsq, is far below CONSTANT_RTOL).
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
        estimate = float(eta_squared(anova(cnt.sum(0), t_all, tq.sum(0))).mean())
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
    constant = ss_total <= CONSTANT_RTOL * raw
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(constant, 0.0, np.minimum(ss_between / ss_total, 1.0)).mean(1)
    se = math.sqrt((s - 1) / s * float(((theta - theta.mean()) ** 2).sum()))
    return estimate - z * se, estimate + z * se
