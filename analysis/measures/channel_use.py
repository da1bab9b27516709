"""Does a gate channel's class preference say which class loses when the channel is taken away?

    rho = preference_agreement(preference, loss)     # mean over channels of a rank correlation over classes
    share = matched_share(preference, loss)          # channels whose preferred class loses most
    null = shuffled_null(preference_agreement, preference, loss, shuffles=999, seed=0)
    rho_s = selectivity_agreement(selectivity, loss)  # across channels: selective channels hurt one class more?

Zhou et al. (2018) and Morcos et al. (2018) ablated single units: overall accuracy barely moved,
but specific classes lost, and a unit's class selectivity predicted which. Here, per block, for each
channel c: its class preference p[c, k] (the class-mean gate of class k minus the channel's mean
over classes, so positive where a class opens it more) and the loss l[c, k] (class k's accuracy
before minus after the intervention on c). The null shuffles which channel's losses go with which
channel's preference, within the block: it keeps every channel's profile and every class's
overall fragility (a class that loses under any intervention), and breaks only their pairing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata

Statistic = Callable[[np.ndarray, np.ndarray], float]  # (a channel's property [M, ...], loss [M, K]) -> a number


def row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of each row of a [M, K] with the same row of b [M, K] (ties get
    their average rank); NaN for a row constant on either side."""
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra, rb = ra - ra.mean(1, keepdims=True), rb - rb.mean(1, keepdims=True)
    norm = np.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (ra * rb).sum(1) / np.where(norm > 0, norm, 1.0), np.nan)


def preference_agreement(preference: np.ndarray, loss: np.ndarray) -> float:
    """The mean over channels of the rank correlation, across classes, of a channel's preference and
    its per-class loss; channels whose intervention changed no class's accuracy (a constant loss
    row) say nothing and are left out. NaN when every channel is left out."""
    rho = row_spearman(preference, loss)
    return float(np.nanmean(rho)) if np.isfinite(rho).any() else math.nan


def matched_share(preference: np.ndarray, loss: np.ndarray) -> float:
    """The share of channels (with a non-constant loss row) whose preferred class is the one that
    loses most (ties in the loss: any of the tied classes counts)."""
    varies = np.ptp(loss, axis=1) > 0
    if not varies.any():
        return math.nan
    top = preference.argmax(1)
    hit = loss[np.arange(len(loss)), top] == loss.max(1)
    return float(hit[varies].mean())


def selectivity_agreement(selectivity: np.ndarray, loss: np.ndarray) -> float:
    """Spearman's rank correlation across channels of the class selectivity index [M] (Morcos et
    al.) and how much the loss [M, K] falls on one class (its largest entry minus its mean): do more
    selective channels hurt one class more? NaN with fewer than 3 channels or a constant side."""
    concentration = loss.max(1) - loss.mean(1)
    if len(selectivity) < 3:
        return math.nan
    return float(row_spearman(np.asarray(selectivity)[None, :], concentration[None, :])[0])


def shuffled_null(statistic: Statistic, preference: np.ndarray, loss: np.ndarray, *, shuffles: int,
                  seed: int) -> np.ndarray:
    """[shuffles] values of `statistic` with the channels' loss rows dealt out again at random
    (a seeded permutation of the rows each time)."""
    rng = np.random.default_rng(seed)
    return np.array([statistic(preference, loss[rng.permutation(len(loss))]) for _ in range(shuffles)])


def null_p(observed: float, null: np.ndarray) -> float:
    """One-sided permutation p-value (1 + #{null >= observed}) / (1 + #null); NaN when the observed
    value or every null value is NaN."""
    null = null[np.isfinite(null)]
    if math.isnan(observed) or not null.size:
        return math.nan
    return float((1 + (null >= observed).sum()) / (1 + null.size))
