"""One-way analysis of variance per channel from per-class moments: eta-squared, F, p, effect sizes.

The moments may be of shifted values x - shift (GateStats keeps them so, so that gates varying by
1e-5 around 0.5 keep their digits); sums of squares do not depend on the shift, means do.

A channel is *constant* when its total sum of squares is at most `constant_floor`: N times the
variance of values confined within +-CONSTANT_ULPS float32 spacings of their mean (gates are
float32; a spread that small is rounding of the gate's own computation), plus the float64 rounding
of forming the sum of squares. A constant channel has zero specificity on every measure: eta2 = 0,
eps2 = 0, class_mod = 0, F = 0, p = 1, selectivity = 0, MI = 0, std = 0, and its preferred class is
the first class with samples. A single class's within-class sum of squares below its own floor is
exactly 0. Classes with no samples are ignored; K' is the number of classes with samples.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.measures._arrays import Array, as_numpy

# The largest variance of values within +-a of their mean is a^2; a float32 spacing at |x| is at most
# eps32 |x|, so values within 2 spacings of the mean have variance <= (2 eps32 |mean|)^2.
CONSTANT_ULPS = 2.0
_EPS32 = float(np.finfo(np.float32).eps)
_EPS64 = float(np.finfo(np.float64).eps)


def constant_floor(n: np.ndarray, mean: np.ndarray, sumsq: np.ndarray) -> np.ndarray:
    """Largest sum of squares that is rounding, not variation: n (CONSTANT_ULPS eps32 |mean|)^2
    for float32 gates, plus 4 eps64 sumsq for forming sumsq - sum^2 / n in float64. Broadcasts."""
    return n * (CONSTANT_ULPS * _EPS32 * mean) ** 2 + 4 * _EPS64 * np.abs(sumsq)


class Anova(NamedTuple):
    """A one-way layout per channel: class means [K, C] (0 for empty classes), the rest [C]."""

    n: float  # samples
    classes: int  # classes with samples
    counts: np.ndarray  # [K] samples per class
    means: np.ndarray
    ss_between: np.ndarray
    ss_within: np.ndarray
    constant: np.ndarray  # bool: no variation beyond rounding; both sums of squares are 0 there


def anova(count: Array, total: Array, total_sq: Array, shift: Array | None = None) -> Anova:
    """Between- and within-class sums of squares from per-class moments, in float64.

    Each class's within sum of squares is sumsq_k - sum_k^2 / n_k (clamped at 0), which cancels
    only within one class; between is sum n_k (mean_k - mean)^2; the total is their sum, never the
    badly cancelling sumsq - sum^2 / N. count [K], total and total_sq [K, C] of x - shift, shift
    [C] (None: 0). `means` are of x (shift added back).
    """
    n_k = as_numpy(count).astype(np.float64)
    t = as_numpy(total).astype(np.float64, copy=False)
    tq = as_numpy(total_sq).astype(np.float64, copy=False)
    c = t.shape[1]
    shift = np.zeros(c) if shift is None else as_numpy(shift).astype(np.float64)
    inv = np.divide(1.0, n_k, out=np.zeros_like(n_k), where=n_k > 0)[:, None]
    means = t * inv
    ss = t * means
    np.subtract(tq, ss, out=ss)
    np.maximum(ss, 0.0, out=ss)
    ss[ss <= constant_floor(n_k[:, None], means + shift, tq)] = 0.0
    ss_within = ss.sum(0)
    n = float(n_k.sum())
    grand = t.sum(0) / max(n, 1.0)
    dev = means - grand
    dev *= dev
    dev *= n_k[:, None]
    ss_between = dev.sum(0)
    constant = ss_within + ss_between <= constant_floor(n, grand + shift, tq.sum(0))
    ss_within[constant] = 0.0
    ss_between[constant] = 0.0
    means += shift
    means[n_k == 0] = 0.0
    return Anova(n, int((n_k > 0).sum()), n_k, means, ss_between, ss_within, constant)


def eta_squared(a: Anova) -> np.ndarray:
    """Between / total sum of squares per channel, 0 for a constant channel: [C] float64. NaN for a
    non-constant channel when no sample shares a class with another (N <= K' with K' >= 2): eta2 is
    then 1 whatever the gates, which says nothing."""
    if a.classes >= 2 and a.n <= a.classes:
        return np.where(a.constant, 0.0, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a.constant, 0.0, a.ss_between / (a.ss_between + a.ss_within))


def f_statistic(a: Anova) -> tuple[np.ndarray, float, float]:
    """One-way ANOVA F per channel [C] with its degrees of freedom (K'-1, N-K').

    Constant channel: F = 0. Constant within every class but not overall: F = inf. No degrees of
    freedom (K' < 2 or N <= K') for a non-constant channel: NaN.
    """
    k, n = a.classes, a.n
    if k < 2 or n <= k:
        return np.where(a.constant, 0.0, np.nan), float(k - 1), float(n - k)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(a.ss_within > 0, (a.ss_between / (k - 1)) / (a.ss_within / (n - k)), np.inf)
    f[a.constant] = 0.0
    return f, float(k - 1), float(n - k)


def f_p_value(f: np.ndarray, df1: np.ndarray | float, df2: np.ndarray | float) -> np.ndarray:
    """Upper-tail p-value of F (broadcast with its degrees of freedom): 1 at F = 0, 0 at inf, NaN at NaN.
    One call for many layouts (the resamples) is much faster than one per layout."""
    with np.errstate(invalid="ignore"):
        return np.where(f == 0, 1.0, sps.f.sf(f, df1, df2))


def f_test(a: Anova) -> tuple[np.ndarray, np.ndarray]:
    """One-way ANOVA F (`f_statistic`) and its upper-tail p-value per channel: [C], [C]: constant
    channel p = 1, F = inf p = 0, NaN F NaN p."""
    f, df1, df2 = f_statistic(a)
    return f, f_p_value(f, df1, df2)


def epsilon_squared(a: Anova) -> np.ndarray:
    """Bias-corrected eta2 per channel, (SS_b - (K'-1) MS_w) / SS_t with MS_w = SS_w / (N - K'):
    its expectation is ~0 without a class effect, so it is not clipped (block means stay unbiased).
    0 for a constant channel; NaN without degrees of freedom (K' < 2 or N <= K'). [C]."""
    k, n = a.classes, a.n
    if k < 2 or n <= k:
        return np.where(a.constant, 0.0, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        eps = (a.ss_between - (k - 1) * a.ss_within / (n - k)) / (a.ss_between + a.ss_within)
    return np.where(a.constant, 0.0, eps)


def class_modulation(a: Anova) -> np.ndarray:
    """sqrt(SS_between / N) per channel, in gate units: the rms distance of a sample's class mean
    from the channel mean (how far apart the class curves are). 0 constant, NaN without samples. [C]."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(a.ss_between / a.n)


def eta2_null(classes: int, samples: float) -> float:
    """Expected eta2 of a channel without any class effect, (K'-1)/(N-1); 0 when K' < 2; NaN when
    N <= K' (eta2 itself is then undefined, see eta_squared)."""
    if classes < 2:
        return 0.0
    return (classes - 1) / (samples - 1) if samples > classes else float("nan")


def null_band(blocks: pd.DataFrame, level: float = 0.95) -> pd.Series:
    """Per block, the `level` quantile of one channel's eta2 when classes do not matter.

    Under no class effect (Gaussian gates) eta2 ~ Beta((K-1)/2, (N-K)/2), whose mean is the
    table's eta2_null. Block means average many channels, so they fall inside this band by far.
    """
    k, n = blocks["classes"].astype(float), blocks["samples"].astype(float)
    return pd.Series(sps.beta.ppf(level, (k - 1) / 2, (n - k) / 2), index=blocks.index)
