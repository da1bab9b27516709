"""The label-permutation null: the block statistics under fixed pseudo-labellings of the samples.

GateStats keeps the moments of every gate under P relabellings (pseudo-labels from a hash of the
sample id, independent of the data), exact under merge; the same statistics computed from them are
what the block would show if the class did not matter, with the block's own noise and sizes.
"""

from __future__ import annotations

import numpy as np

from typing import NamedTuple

from analysis.measures._arrays import Array, as_numpy
from analysis.measures.anova import anova, class_modulation, eta_squared
from analysis.measures.profiles import profile_separation


class Null(NamedTuple):
    """Block statistics under each of the P relabellings, [P] each."""

    eta2: np.ndarray  # block-mean eta2
    class_mod: np.ndarray  # block-mean class modulation, gate units
    shape_sep: np.ndarray


def permutation_null(count: Array, total: Array, total_sq: Array, shift: Array) -> Null:
    """The block statistics under each relabelling: count [P, K], total and total_sq [P, K, C] of
    x - shift (shift [C])."""
    cnt, t, tq = as_numpy(count), as_numpy(total), as_numpy(total_sq)
    eta2, mod, shape = (np.empty(cnt.shape[0]) for _ in range(3))
    for p in range(cnt.shape[0]):
        a = anova(cnt[p], t[p], tq[p], shift)
        eta2[p], mod[p] = float(eta_squared(a).mean()), float(class_modulation(a).mean())
        shape[p] = profile_separation(a)[1]
    return Null(eta2, mod, shape)


def permutation_p(observed: float, null: np.ndarray) -> float:
    """(1 + #null >= observed) / (1 + P): the permutation p-value, never 0 (NaN without a null)."""
    return float((1 + (null >= observed).sum()) / (1 + null.size)) if null.size else float("nan")
