"""Class profiles: how a channel's class means differ (selectivity), and how alike the classes'
whole gate profiles are (the SE paper's "curves overlap")."""

from __future__ import annotations

import math

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


def profile_separation(class_means: Array) -> tuple[float, float]:
    """(profile_sep, shape_sep) of one block from its class-mean profiles m_k: class_means [K', C].

    profile_sep = rms over classes and channels of m_k - m (m the mean profile over classes)
    divided by the std of m across channels: how far apart the class curves are, compared with
    the structure of the common curve. shape_sep is the same after removing from each m_k - m its
    least-squares fit on [1, m - mean(m)], the part a per-class shift and scale of m explains:
    curves that differ only so are class-agnostic in the SE paper's sense. The share of
    between-class variance the fit leaves is no criterion on its own (for unstructured deviations
    it is (C-2)/C whatever their size), hence the division by the profile's spread. 0 when the
    class curves are identical; NaN with K' < 2 or otherwise a flat m (std 0 across channels).
    """
    mk = as_numpy(class_means).astype(np.float64, copy=False)
    if mk.shape[0] < 2:
        return math.nan, math.nan
    m = mk.mean(0)
    d = mk - m
    if not d.any():
        return 0.0, 0.0  # identical class curves (constant gates): no separation, even on a flat m
    u = m - m.mean()
    spread = float(np.sqrt((u * u).mean()))
    if spread == 0.0:
        return math.nan, math.nan
    # 1 and u are orthogonal (u is centred), so the fit is the two separate projections
    r = d - d.mean(1, keepdims=True) - np.outer(d @ u / float(u @ u), u)
    return float(np.sqrt((d * d).mean())) / spread, float(np.sqrt((r * r).mean())) / spread
