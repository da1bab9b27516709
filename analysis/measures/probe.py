"""Linear probe: how well a linear classifier tells the classes apart from whole gate vectors.

The probe reads the per-class reservoirs of GateStats: values [n, C] float32 with labels [n] int64,
up to R whole gate vectors per class.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import sparse
from scipy import stats as sps

from analysis.measures._arrays import Array, as_numpy

PROBE_STD_FLOOR = 1e-6  # smallest feature std used to standardise the probe's inputs
PROBE_MAX_CLASSES = 128  # the probe's cost grows with classes^2; see `probe`


class Probe(NamedTuple):
    """Cross-validated linear probe: accuracy, chance accuracy, one-sided binomial p-value."""

    accuracy: float
    chance: float
    p_value: float


def stratified_folds(labels: Array, folds: int, seed: int) -> np.ndarray:
    """Fold index per sample: within each class a seeded shuffle, dealt round-robin. [n] -> [n]."""
    y = as_numpy(labels)
    perm = np.random.default_rng(seed).permutation(y.size)
    order = perm[np.argsort(y[perm], kind="stable")]
    fold = np.empty(y.size, dtype=np.int64)
    fold[order] = np.arange(y.size) % folds
    return fold


# long: folds, standardisation and the class subset in one place; rewritten by the logistic probe (issue 14)
def probe(
    values: Array,
    labels: Array,
    *,
    folds: int = 5,
    seed: int = 0,
    max_classes: int | None = PROBE_MAX_CLASSES,
) -> Probe:
    """Nearest-class-mean probe with stratified k-fold cross-validation on reservoir vectors.

    Features are standardised with the training fold's mean and std (floor PROBE_STD_FLOOR); the
    nearest class mean is the linear classifier of a shared isotropic covariance, and its distances
    come from one matmul per fold. That matmul costs n K C multiply-adds, which grows as K^2 at a
    fixed number of vectors per class (2.4e11 at K = 1000 and 15k channels, several seconds on two
    cores): with more than `max_classes` classes the probe runs on a seeded random subset of that
    many classes (the same subset for every gate of a run, whose reservoirs hold the same samples),
    and its chance level is that of the subset. None uses every class.
    values [n, C] float, labels [n] int.
    """
    x = as_numpy(values)
    y = as_numpy(labels).astype(np.int64, copy=False)
    classes = np.unique(y)
    rows = np.arange(y.size)
    if max_classes is not None and classes.size > max_classes:
        classes = np.sort(np.random.default_rng(seed).choice(classes, max_classes, replace=False))
        rows = np.flatnonzero(np.isin(y, classes))
    n = rows.size
    if folds < 2 or n < folds or classes.size < 2:
        return Probe(math.nan, math.nan, math.nan)
    fold = stratified_folds(y[rows], folds, seed)
    by_fold = np.argsort(fold, kind="stable")  # each test fold is then a contiguous block of rows
    x, y, fold = x[rows[by_fold]].astype(np.float32, copy=False), y[rows[by_fold]], fold[by_fold]
    edges = np.searchsorted(fold, np.arange(folds + 1))
    k_all, position = np.unique(y, return_inverse=True)
    group = position * folds + fold
    # sums per (class, fold) in one pass, as a sparse one-hot product; each fold's training sums
    # are then the totals minus its own
    one_hot = sparse.csr_matrix((np.ones(n), (group, np.arange(n))), (k_all.size * folds, n))
    sums = np.asarray(one_hot @ x.astype(np.float64)).reshape(k_all.size, folds, -1)  # [K', folds, C]
    counts = np.bincount(group, minlength=k_all.size * folds).reshape(k_all.size, folds)
    sum_all, count_all = sums.sum(1), counts.sum(1)
    sq_all = np.einsum("ij,ij->j", x, x, dtype=np.float64)
    correct = 0
    for f in range(folds):
        x_te, y_te = x[edges[f] : edges[f + 1]], y[edges[f] : edges[f + 1]]
        n_tr = n - y_te.size
        class_sums, per_class = sum_all - sums[:, f], count_all - counts[:, f]
        mu = class_sums.sum(0) / n_tr
        var = (sq_all - np.einsum("ij,ij->j", x_te, x_te, dtype=np.float64)) / n_tr - mu**2
        sd = np.maximum(np.sqrt(np.maximum(var, 0.0)), PROBE_STD_FLOOR)
        seen = per_class > 0
        centres = np.ascontiguousarray(((class_sums[seen] / per_class[seen, None] - mu) / sd).T, np.float32)
        z = (x_te - mu.astype(np.float32)) / sd.astype(np.float32)
        score = np.einsum("ck,ck->k", centres, centres) - 2.0 * (z @ centres)  # |z - m|^2 - |z|^2
        correct += int((k_all[seen][score.argmin(1)] == y_te).sum())
    # Chance: always guessing the most frequent class. Taken over the whole probe set, because a
    # per-fold majority is biased low under stratified folds (a fold's test samples come from
    # the classes it leaves in training least), down to 0 with 4 vectors per class and 5 folds.
    chance = count_all.max() / n
    p = sps.binomtest(correct, n, chance, alternative="greater").pvalue
    return Probe(correct / n, chance, float(p))
