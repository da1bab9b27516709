"""Class profiles: how a channel's class means differ (selectivity), and how alike the classes'
whole gate profiles are (the SE paper's "curves overlap")."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from analysis.measures._arrays import Array, as_numpy
from analysis.measures.anova import Anova


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


class ProfileSplit(NamedTuple):
    """How one block's class-mean curves m_k differ from their common curve m, in gate units."""

    deviation: float  # rms over classes and channels of m_k - m
    residual: float  # the same after removing each m_k - m's least-squares fit on [1, m - mean(m)]
    affine_r2: float  # 1 - residual^2 / deviation^2: the share a per-class shift and scale of m explains


def profile_split(a: Anova) -> ProfileSplit:
    """(deviation, residual, affine_r2) of one block's layout, over the classes with samples.

    A per-class shift and scale of the common curve m (m_k = m + a_k + b_k (m - mean(m))) leaves
    the residual 0: such curves are copies of one curve, class-agnostic in the SE paper's sense.
    Identical class curves (constant gates too) have no residual: (0, 0, 1). NaN with K' < 2. A
    flat m leaves the shift only.
    """
    mk = a.means[a.counts > 0]
    if mk.shape[0] < 2:
        return ProfileSplit(math.nan, math.nan, math.nan)
    m = mk.mean(0)
    d = mk - m
    u = m - m.mean()
    # 1 and u are orthogonal (u is centred), so the fit is the two separate projections
    r = d - d.mean(1, keepdims=True)
    uu = float(u @ u)
    if uu > 0:
        r -= np.outer(r @ u / uu, u)
    dev, res = float(np.sqrt((d * d).mean())), float(np.sqrt((r * r).mean()))
    return ProfileSplit(dev, res, 1.0 - (res / dev) ** 2 if dev > 0 else 1.0)


def gate_sd(a: Anova) -> float:
    """Standard deviation of all N*C gate values of one block around their block mean: sqrt of the
    channels' mean total variance (within and between classes) plus the variance of the channel
    means across channels. The yardstick of `profile_separation`; it does not depend on the labels."""
    if a.n == 0:
        return math.nan
    grand = a.counts @ a.means / a.n  # [C] channel means
    total = (a.ss_between + a.ss_within) / a.n
    return float(np.sqrt(total.mean() + grand.var()))


def profile_separation(a: Anova) -> tuple[float, float]:
    """(profile_sep, shape_sep) of one block: `profile_split`'s deviation and residual divided by
    the block's gate standard deviation (`gate_sd`).

    shape_sep is the part of the class curves' differences that is not a copy of the common curve,
    as a share of everything the block's gates do (across channels, classes and images). Why this
    yardstick and not the common curve's spread across channels (before issue 23) or the
    within-class SD: the README's "What is measured" gives the evidence. 0 when the class curves
    are identical (constant gates included); NaN with K' < 2.
    """
    split, sd = profile_split(a), gate_sd(a)
    if split.deviation == 0.0 or sd == 0.0:  # sd 0: the means differ by rounding alone (anova's constant floor)
        return 0.0, 0.0
    return split.deviation / sd, split.residual / sd
