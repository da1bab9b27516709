"""The label-permutation null: the block statistics under fixed pseudo-labellings of the samples.

GateStats keeps the moments of every gate under P relabellings (pseudo-labels from a hash of the
sample id, independent of the data), exact under merge; the same statistics computed from them are
what the block would show if the class did not matter, with the block's own noise and sizes.
"""

from __future__ import annotations

import numpy as np

from analysis.measures._arrays import Array, as_numpy
from analysis.measures.anova import anova, eta_squared
from analysis.measures.profiles import profile_separation


def permutation_null(count: Array, total: Array, total_sq: Array, shift: Array) -> tuple[np.ndarray, np.ndarray]:
    """(block-mean eta2 [P], shape_sep [P]) under each relabelling: count [P, K], total and total_sq
    [P, K, C] of x - shift (shift [C])."""
    cnt, t, tq = as_numpy(count), as_numpy(total), as_numpy(total_sq)
    eta2, shape = np.empty(cnt.shape[0]), np.empty(cnt.shape[0])
    for p in range(cnt.shape[0]):
        a = anova(cnt[p], t[p], tq[p], shift)
        eta2[p] = float(eta_squared(a).mean())
        shape[p] = profile_separation(a.means[cnt[p] > 0])[1]
    return eta2, shape


def permutation_p(observed: float, null: np.ndarray) -> float:
    """(1 + #null >= observed) / (1 + P): the permutation p-value, never 0 (NaN without a null)."""
    return float((1 + (null >= observed).sum()) / (1 + null.size)) if null.size else float("nan")
