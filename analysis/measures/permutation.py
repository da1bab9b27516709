"""The label-permutation null: the block statistics under fixed pseudo-labellings of the samples.

GateStats keeps, under P relabellings (pseudo-labels from a hash of the sample id, independent of
the data), the class counts and sums of every gate, exact under merge; the same statistics computed
from them are what the block would show if the class did not matter, with its own noise and sizes.

Sums suffice: a channel's total sum of squares does not depend on the labels, so a relabelling's
one-way layout (`relabelled`) takes its between-class sum of squares from counts and sums and its
within-class sum of squares as the rest of the true layout's total. That keeps a relabelling at one
float32 table (K x C), so that P = 99 relabellings, whose p-value reaches 0.01, cost what 8 tables of
sums and squares in float64 cost before.
"""

from __future__ import annotations

import numpy as np

from typing import NamedTuple

from analysis.measures._arrays import Array, as_numpy
from analysis.measures.anova import Anova, class_modulation, eta_squared
from analysis.measures.profiles import profile_separation


class Null(NamedTuple):
    """Block statistics under each of the P relabellings, [P] each."""

    eta2: np.ndarray  # block-mean eta2
    class_mod: np.ndarray  # block-mean class modulation, gate units
    shape_sep: np.ndarray


def relabelled(a: Anova, count: Array, total: Array, shift: Array) -> Anova:
    """The one-way layout of a relabelling: count [K], total [K, C] sums of x - shift (shift [C])
    under it; `a` the true labels' layout, whose total sum of squares per channel and constant
    channels every relabelling shares. Means are of x (shift added back), 0 for empty classes."""
    n_k = as_numpy(count).astype(np.float64)
    means = as_numpy(total).astype(np.float64) * np.divide(1.0, n_k, out=np.zeros_like(n_k), where=n_k > 0)[:, None]
    n = float(n_k.sum())
    deviation = means - (n_k @ means) / max(n, 1.0)
    ss_total = a.ss_between + a.ss_within
    ss_between = np.minimum((n_k[:, None] * deviation * deviation).sum(0), ss_total)
    ss_between[a.constant] = 0.0
    means += as_numpy(shift).astype(np.float64)
    means[n_k == 0] = 0.0
    return Anova(n, int((n_k > 0).sum()), n_k, means, ss_between, ss_total - ss_between, a.constant)


def permutation_null(count: Array, total: Array, shift: Array, a: Anova) -> Null:
    """The block statistics under each relabelling: count [P, K], total [P, K, C] sums of x - shift
    (shift [C]) under relabelling p; `a` the true labels' layout (`relabelled`)."""
    cnt, t = as_numpy(count), as_numpy(total)
    eta2, mod, shape = (np.empty(cnt.shape[0]) for _ in range(3))
    for p in range(cnt.shape[0]):
        null = relabelled(a, cnt[p], t[p], shift)
        eta2[p], mod[p] = float(eta_squared(null).mean()), float(class_modulation(null).mean())
        shape[p] = profile_separation(null)[1]
    return Null(eta2, mod, shape)


def permutation_p(observed: float, null: np.ndarray) -> float:
    """(1 + #null >= observed) / (1 + P): the permutation p-value, never 0 (NaN without a null).
    At its floor 1 / (1 + P) it says p <= 1 / (1 + P), not more."""
    return float((1 + (null >= observed).sum()) / (1 + null.size)) if null.size else float("nan")
