"""The label-permutation null: the block statistics under fixed pseudo-labellings of the samples.

GateStats keeps, under P relabellings (pseudo-labels from a hash of the sample id, independent of
the data), the class counts and sums of every gate, exact under merge; the same statistics computed
from them are what the block would show if the class did not matter, with its own noise and sizes.

Sums suffice: a channel's total sum of squares does not depend on the labels, so eta2 under a
relabelling is its between-class sum of squares (from counts and sums) over the total of the true
table; shape_sep needs only the relabelled class means. That keeps a relabelling at one float32
table (K x C), so that P = 99 relabellings, whose p-value reaches 0.01, cost what 8 tables of sums
and squares in float64 cost before.
"""

from __future__ import annotations

import numpy as np

from analysis.measures._arrays import Array, as_numpy
from analysis.measures.anova import Anova
from analysis.measures.profiles import profile_separation


def permutation_null(count: Array, total: Array, shift: Array, a: Anova) -> tuple[np.ndarray, np.ndarray]:
    """(block-mean eta2 [P], shape_sep [P]) under each relabelling: count [P, K], total [P, K, C]
    sums of x - shift (shift [C]) under relabelling p; `a` the true labels' layout, whose total sum
    of squares per channel (and constant channels, eta2 0) every relabelling shares."""
    cnt, t, shift = as_numpy(count).astype(np.float64), as_numpy(total), as_numpy(shift).astype(np.float64)
    ss_total = a.ss_between + a.ss_within
    inv_total = np.divide(1.0, ss_total, out=np.zeros_like(ss_total), where=~a.constant & (ss_total > 0))
    eta2, shape = np.empty(cnt.shape[0]), np.empty(cnt.shape[0])
    for p in range(cnt.shape[0]):
        present = cnt[p] > 0
        n_k, sums = cnt[p, present][:, None], t[p, present].astype(np.float64)
        means = sums / n_k
        deviation = means - sums.sum(0) / n_k.sum()
        eta2[p] = float(((n_k * deviation * deviation).sum(0) * inv_total).mean())
        shape[p] = profile_separation(means + shift)[1]
    return eta2, shape


def permutation_p(observed: float, null: np.ndarray) -> float:
    """(1 + #null >= observed) / (1 + P): the permutation p-value, never 0 (NaN without a null).
    At its floor 1 / (1 + P) it says p <= 1 / (1 + P), not more."""
    return float((1 + (null >= observed).sum()) / (1 + null.size)) if null.size else float("nan")
