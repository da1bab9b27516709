"""Linear probes: how well a linear classifier tells the classes apart from whole gate vectors.

The probes read the per-class reservoirs of GateStats: values [n, C] float32 with labels [n] int64,
up to R whole gate vectors per class. `probe` is a multinomial L2 logistic regression (the linear
classifier that gate channels correlated within a class need); `ncm_probe` is the nearest class
mean, kept as a reference (it assumes a shared isotropic covariance and scores 8-28 points lower
on trained SE gates).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import torch
from scipy import sparse
from scipy import stats as sps

from analysis.capture.keys import sample_hash
from analysis.measures._arrays import Array, as_numpy

PROBE_STD_FLOOR = 1e-6  # smallest feature std used to standardise the probe's inputs
PROBE_MAX_CLASSES = 128  # on the CPU the probe's cost grows with classes^2; see `probe`
PROBE_C = 1.0  # inverse L2 strength, as scikit-learn's LogisticRegression(C=1.0)
PROBE_MAX_ITER = 200  # L-BFGS iterations per fold at most
_SMALL_FIT = 1 << 22  # n C K below which a CPU fit runs on one thread (see _few_threads)
PROBE_TOL = 1e-5  # L-BFGS stops when no gradient entry of the mean loss exceeds this (scikit-learn: 1e-4)
PROBE_MIN_VECTORS = 2  # vectors a class needs to be in the probe: with one, it is tested but never trained on


class Probe(NamedTuple):
    """Cross-validated probe: accuracy, chance accuracy, one-sided binomial p-value, vectors per class."""

    accuracy: float
    chance: float
    p_value: float
    per_class: float  # probe vectors / classes in the probe set


def stratified_folds(labels: Array, folds: int, seed: int) -> np.ndarray:
    """Fold index per sample: within each class a seeded shuffle, dealt round-robin. [n] -> [n]."""
    y = as_numpy(labels)
    perm = np.random.default_rng(seed).permutation(y.size)
    order = perm[np.argsort(y[perm], kind="stable")]
    fold = np.empty(y.size, dtype=np.int64)
    fold[order] = np.arange(y.size) % folds
    return fold


def control_labels(labels: Array, ids: Array, seed: int) -> np.ndarray:
    """The control task's labels (Hewitt & Liang 2019): the true labels dealt out again, in order
    of sample id, to the samples in a seeded order (a hash of the id). Each class keeps its count, so
    the control's chance level is the probe's, and the labels depend on the samples alone, not on the
    order they are listed in. labels [n], ids [n] int -> [n] int64."""
    y, i = as_numpy(labels).astype(np.int64), as_numpy(ids).astype(np.int64)
    dealt = np.argsort(as_numpy(sample_hash(torch.from_numpy(i), seed)[1]), kind="stable")
    out = np.empty_like(y)
    out[dealt] = y[np.argsort(i, kind="stable")]
    return out


def _probe_set(values: Array, labels: Array, folds: int, seed: int, max_classes: int | None):
    """(x [n, C] float32, class positions [n], class labels [K'], fold [n]) sorted by fold, or None
    when there is nothing to cross-validate. Classes of fewer than PROBE_MIN_VECTORS vectors are left
    out (a class never trained on scores 0 however informative the gates); more than `max_classes`
    classes: a seeded subset."""
    x = as_numpy(values)
    y = as_numpy(labels).astype(np.int64, copy=False)
    classes, sizes = np.unique(y, return_counts=True)
    classes = classes[sizes >= PROBE_MIN_VECTORS]
    if max_classes is not None and classes.size > max_classes:
        classes = np.sort(np.random.default_rng(seed).choice(classes, max_classes, replace=False))
    rows = np.flatnonzero(np.isin(y, classes))
    if folds < 2 or rows.size < folds or classes.size < 2:
        return None
    fold = stratified_folds(y[rows], folds, seed)
    by_fold = np.argsort(fold, kind="stable")  # each test fold is then a contiguous block of rows
    x, y, fold = x[rows[by_fold]].astype(np.float32, copy=False), y[rows[by_fold]], fold[by_fold]
    k_all, position = np.unique(y, return_inverse=True)
    return x, position, k_all, fold


def _scored(correct: int, position: np.ndarray, k: int) -> Probe:
    """Probe from the correct predictions. Chance: always guessing the most frequent class, over
    the whole probe set, because a per-fold majority is biased low under stratified folds (a fold's
    test samples come from the classes it leaves in training least), down to 0 with 4 vectors per
    class and 5 folds."""
    n = position.size
    chance = np.bincount(position, minlength=k).max() / n
    p = sps.binomtest(correct, n, chance, alternative="greater").pvalue
    return Probe(correct / n, float(chance), float(p), n / k)


def fit_logistic(
    z: torch.Tensor,
    y: torch.Tensor,
    k: int,
    *,
    c: float = PROBE_C,
    max_iter: int = PROBE_MAX_ITER,
    tol: float = PROBE_TOL,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial L2 logistic regression, full-batch L-BFGS: (W [C, K], b [K]) minimising
    mean cross-entropy + |W|^2 / (2 c n), scikit-learn's C sum CE + |W|^2 / 2 scaled by 1/(c n)
    (the intercept unpenalised, as there). z [n, C] float (the probe's: float32), y [n].

    `start`: (W, b) to begin from instead of zero. The objective is strictly convex up to a
    constant added to every intercept (which no step changes: the intercepts' gradient sums to
    zero), so with the start's intercepts centred the optimum is the same; from a neighbouring
    fold's fit it takes a fraction of the iterations. The gradient is written out (two matmuls
    per evaluation, no autograd graph)."""
    n, d = z.shape
    w = z.new_zeros(d + 1, k) if start is None else torch.cat([start[0], (start[1] - start[1].mean())[None]]).to(z)
    w.requires_grad_(True)  # LBFGS steps the parameters that require a gradient; `loss` fills it
    opt = torch.optim.LBFGS([w], max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")
    target = torch.nn.functional.one_hot(y, k).to(z.dtype)
    strength = 1.0 / (c * n)

    @torch.no_grad()
    def loss() -> torch.Tensor:
        logits = torch.addmm(w[d], z, w[:d])  # [n, K]
        lse = torch.logsumexp(logits, 1)
        value = (lse.sum() - (logits * target).sum()) / n + strength / 2 * (w[:d] ** 2).sum()
        residual = (torch.exp(logits - lse[:, None]) - target) / n  # d mean CE / d logits
        w.grad = torch.cat([torch.addmm(w[:d], z.T, residual, beta=strength), residual.sum(0, keepdim=True)])
        return value

    opt.step(loss)
    w = w.detach()
    return w[:d], w[d]


class _Fold(NamedTuple):
    """One cross-validation fold's features: the vectors standardised with the training part's
    mean and population std (floor PROBE_STD_FLOOR), in the coordinates of `basis` when it has one."""

    train: torch.Tensor  # [m, r] float32
    test: torch.Tensor  # [t, r] float32
    mean: torch.Tensor  # [C]
    std: torch.Tensor  # [C]
    basis: torch.Tensor | None  # [C, m] float32 orthonormal columns, or None (r = C)


def _fold(x: torch.Tensor, test: slice) -> _Fold:
    """The fold whose test rows are `test` of x [n, C]. With at most half as many training vectors
    as channels, coordinates in an orthonormal basis of the training vectors' span (r = m): the loss
    reads the weights only through that span and the L2 penalty only grows outside it, so the fit
    and its predictions are the same, at m / C of the cost per iteration (the basis costs two)."""
    train = torch.cat([x[: test.start], x[test.stop :]])
    mu, sd = train.mean(0), train.std(0, correction=0).clamp_min(PROBE_STD_FLOOR)
    z_train, z_test = (((part - mu) / sd).float() for part in (train, x[test]))
    if 2 * len(z_train) > z_train.shape[1]:
        return _Fold(z_train, z_test, mu, sd, None)
    basis = torch.linalg.qr(z_train.T).Q
    return _Fold(z_train @ basis, z_test @ basis, mu, sd, basis)


def _moved(fit: tuple[torch.Tensor, torch.Tensor], source: _Fold, target: _Fold) -> tuple[torch.Tensor, torch.Tensor]:
    """`source`'s fit (W, b) as the same function of the raw vectors in `target`'s features
    (projected on its basis, where the optimum lies, when it has one): target's starting point."""
    w, b = fit
    raw = (w if source.basis is None else source.basis @ w).double() / source.std[:, None]  # [C, K] on raw vectors
    bias = b.double() + (target.mean - source.mean) @ raw
    w = (raw * target.std[:, None]).float()
    return (w if target.basis is None else target.basis.T @ w), bias.float()


def probe(
    values: Array,
    labels: Array,
    *,
    folds: int = 5,
    seed: int = 0,
    max_classes: int | None = PROBE_MAX_CLASSES,
    c: float = PROBE_C,
    device: torch.device | str | None = None,
) -> Probe:
    """L2 multinomial logistic regression on standardised reservoir vectors, stratified k-fold.

    Each fold standardises with its training part (`_fold`) and is fit by full-batch L-BFGS in
    float32 on `device` (the statistics' device), starting from the previous fold's fit: the folds
    share three quarters of their training vectors, so where the classes are told apart a fold
    after the first takes a few iterations. A fit costs m K min(m, C) per iteration (m training
    vectors): fast on a GPU at 1000 classes x 2048 channels, but on the CPU, with more than
    `max_classes` classes, the probe runs on a seeded random subset of that many classes (the same
    for every gate of a run, whose reservoirs hold the same samples) and chance is the subset's.
    None: every class. values [n, C] float, labels [n] int. NaN fields when there is nothing to
    cross-validate.
    """
    found = _probe_set(values, labels, folds, seed, max_classes)
    if found is None:
        return Probe(math.nan, math.nan, math.nan, math.nan)
    x, position, k_all, fold = found
    dev = torch.device("cpu" if device is None else device)
    xt = torch.from_numpy(x).to(dev, torch.float64)
    yt = torch.from_numpy(position).to(dev)
    edges = np.searchsorted(fold, np.arange(folds + 1))  # the rows are sorted by fold
    correct, fit, before = 0, None, None
    for test in (slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])):
        part = _fold(xt, test)
        start = None if fit is None else _moved(fit, before, part)
        with _few_threads(dev, part.train.numel() * k_all.size):
            fit = fit_logistic(part.train, torch.cat([yt[: test.start], yt[test.stop :]]), k_all.size, c=c, start=start)
        correct += int(((part.test @ fit[0] + fit[1]).argmax(1) == yt[test]).sum())
        before = part
    return _scored(correct, position, k_all.size)


@contextmanager
def _few_threads(device: torch.device, work: int) -> Iterator[None]:
    """One intra-op thread for a small CPU fit: its kernels are microseconds, and waking a second
    thread per kernel made a 240 x 32 fit 27x slower on two loaded cores."""
    if device.type != "cpu" or work > _SMALL_FIT:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ncm_probe(
    values: Array, labels: Array, *, folds: int = 5, seed: int = 0, max_classes: int | None = PROBE_MAX_CLASSES
) -> Probe:
    """Nearest-class-mean probe on the same folds and standardisation as `probe` (the linear
    classifier of a shared isotropic covariance), distances from one matmul per fold."""
    found = _probe_set(values, labels, folds, seed, max_classes)
    if found is None:
        return Probe(math.nan, math.nan, math.nan, math.nan)
    x, position, k_all, fold = found
    n = position.size
    edges = np.searchsorted(fold, np.arange(folds + 1))
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
        x_te, y_te = x[edges[f] : edges[f + 1]], position[edges[f] : edges[f + 1]]
        n_tr = n - y_te.size
        class_sums, per_class = sum_all - sums[:, f], count_all - counts[:, f]
        mu = class_sums.sum(0) / n_tr
        var = (sq_all - np.einsum("ij,ij->j", x_te, x_te, dtype=np.float64)) / n_tr - mu**2
        sd = np.maximum(np.sqrt(np.maximum(var, 0.0)), PROBE_STD_FLOOR)
        seen = np.flatnonzero(per_class > 0)
        centres = np.ascontiguousarray(((class_sums[seen] / per_class[seen, None] - mu) / sd).T, np.float32)
        z = (x_te - mu.astype(np.float32)) / sd.astype(np.float32)
        score = np.einsum("ck,ck->k", centres, centres) - 2.0 * (z @ centres)  # |z - m|^2 - |z|^2
        correct += int((seen[score.argmin(1)] == y_te).sum())
    return _scored(correct, position, k_all.size)
