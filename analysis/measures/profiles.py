"""Class profiles: how a channel's class means differ (selectivity), and how alike the classes'
whole gate profiles are (the SE paper's "curves overlap")."""

from __future__ import annotations

import numpy as np

from analysis.measures._arrays import Array, as_numpy


def selectivity(class_means: Array) -> np.ndarray:
    """Morcos et al. 2018 class selectivity index per channel: class_means [K', C] -> [C].

    (mu_max - mu_rest) / (mu_max + mu_rest) over the given classes; 0 with fewer than 2 classes or
    a zero denominator.
    """
    m = as_numpy(class_means).astype(np.float64, copy=False)
    k = m.shape[0]
    if k < 2:
        return np.zeros(m.shape[1])
    mu_max = m.max(0)
    mu_rest = (m.sum(0) - mu_max) / (k - 1)
    denom = mu_max + mu_rest
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom != 0, (mu_max - mu_rest) / denom, 0.0)


def mean_pairwise_cosine(rows: Array, *, centre: bool = False) -> float:
    """Mean cosine similarity over all pairs of distinct rows; with `centre`, Pearson correlation.

    The sum over pairs is |sum_i u_i|^2 - sum_i |u_i|^2 for the unit rows u_i, one matrix-vector
    product, no M x M matrix and no centred copy. A zero row (cosine), or a constant row (correlation:
    centred norm^2 <= 1e-12 of the norm^2), counts as identical to other such rows and as 0 to the
    rest. 1 with fewer than 2 rows. rows [M, C] -> float.
    """
    x = as_numpy(rows).astype(np.float64, copy=False)
    m, c = x.shape
    if m < 2:
        return 1.0
    raw_sq = np.einsum("kc,kc->k", x, x)
    row_mean = x.sum(1) / c
    norm_sq = raw_sq - c * row_mean**2 if centre else raw_sq
    flat = norm_sq <= (1e-12 * raw_sq if centre else 0.0)
    inv = np.where(flat, 0.0, 1.0 / np.sqrt(np.where(flat, 1.0, norm_sq)))
    summed = inv @ x - (float(inv @ row_mean) if centre else 0.0)
    z = int(flat.sum())
    return (float(summed @ summed) - (m - z) + z * (z - 1)) / (m * (m - 1))
