"""Multiple testing: which channels of a block are class-specific at a false discovery rate."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from analysis.measures._arrays import Array, as_numpy


def benjamini_hochberg(p: Array, q: float = 0.05) -> np.ndarray:
    """Benjamini-Hochberg step-up rejections at FDR q: p [..., m] -> bool [..., m], each row a family.

    An undefined test (NaN p-value) counts as p = 1, so it is never rejected and still counts
    among the m tests.
    """
    p = as_numpy(p).astype(np.float64)
    if p.size == 0:
        return np.zeros(0, dtype=bool)
    return sps.false_discovery_control(np.where(np.isnan(p), 1.0, p), axis=-1, method="bh") <= q
