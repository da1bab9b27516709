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
_SMALL_FIT = 1 << 22  # m r K below which CPU folds are fit together on one thread (see _fold_fits)
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
    weight: torch.Tensor | None = None,
    start: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial L2 logistic regression, full-batch L-BFGS: (W [C, K], b [K]) minimising
    mean cross-entropy + |W|^2 / (2 c n), scikit-learn's C sum CE + |W|^2 / 2 scaled by 1/(c n)
    (the intercept unpenalised, as there). z [n, C] float (the probe's: float32), y [n]. The
    gradient is written out: two matmuls per evaluation, no autograd graph.

    Batched: z [F, n, C], y [n] or [F, n], with `weight` [F, n] (1 for a row in problem f's training
    set, else 0) fits F independent problems in one L-BFGS run, (W [F, C, K], b [F, K]): their losses add up
    with disjoint parameters, so the joint minimum is each one's, and one run of small kernels
    replaces F (for small problems, whose time is the kernels' overhead).

    `start`: (W, b) shaped like the result, to begin from instead of zero. The objective is strictly
    convex up to a constant added to a problem's every intercept (which no step changes: the
    intercepts' gradient sums to zero), so with the start's intercepts centred the optimum is the
    same; from a neighbouring fold's fit it takes a fraction of the iterations."""
    single = z.dim() == 2
    z = z[None] if single else z
    f, n, d = z.shape
    weight = z.new_ones(f, n) if weight is None else weight.to(z.dtype)
    rows = weight.sum(1)  # [F] training rows of each problem
    share, strength = weight / rows[:, None], 1.0 / (c * rows)  # each problem's mean over its own rows; L2
    target = torch.nn.functional.one_hot(y.expand(f, n), k).to(z.dtype)
    if start is None:
        w = z.new_zeros(f, d + 1, k)
    else:
        bias = start[1] - start[1].mean(-1, keepdim=True)
        w = torch.cat([start[0], bias[..., None, :]], -2).to(z).reshape(f, d + 1, k)
    w.requires_grad_(True)  # LBFGS steps the parameters that require a gradient; `loss` fills it
    opt = torch.optim.LBFGS([w], max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-12,
                            history_size=20, line_search_fn="strong_wolfe")

    @torch.no_grad()
    def loss() -> torch.Tensor:
        logits = torch.baddbmm(w[:, d:], z, w[:, :d])  # [F, n, K]
        lse = torch.logsumexp(logits, 2)
        value = (share * (lse - (logits * target).sum(2))).sum() + (strength / 2 * (w[:, :d] ** 2).sum((1, 2))).sum()
        residual = share[..., None] * (torch.exp(logits - lse[..., None]) - target)  # d loss / d logits
        w.grad = torch.cat([torch.baddbmm(strength[:, None, None] * w[:, :d], z.transpose(1, 2), residual),
                            residual.sum(1, keepdim=True)], 1)
        return value

    opt.step(loss)
    weights, bias = w.detach()[:, :d], w.detach()[:, d]
    return (weights[0], bias[0]) if single else (weights, bias)


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
    float32 on `device` (the statistics' device), on the CPU from the previous fold's fit where the
    folds are large (`_fold_fits`). A fit costs m K min(m, C) per iteration (m training vectors):
    fast on a GPU at 1000 classes x 2048 channels, but on the CPU, with more than `max_classes`
    classes, the probe runs on a seeded random subset of that many classes (the same for every
    gate of a run, whose reservoirs hold the same samples) and chance is the subset's. None: every
    class. values [n, C] float, labels [n] int. NaN fields when there is nothing to
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
    tests = [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
    parts = [_fold(xt, test) for test in tests]
    fits = _fold_fits(parts, [torch.cat([yt[: t.start], yt[t.stop :]]) for t in tests], k_all.size, c)
    correct = sum(int(((part.test @ w + b).argmax(1) == yt[t]).sum()) for part, (w, b), t in zip(parts, fits, tests))
    return _scored(correct, position, k_all.size)


def _fold_fits(parts: list[_Fold], labels: list[torch.Tensor], k: int, c: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each fold's fit (W [r, K], b [K]) on its training features and labels. On the CPU, a fold
    of more than _SMALL_FIT m r K is fit alone, from the previous fold's fit (`_moved`): the
    matmuls are the time, and a fold after the first takes a few iterations where the classes are
    told apart. Smaller folds, and any on a GPU, where the kernels' overhead is the time, are
    fit together in one batched run."""
    train = parts[0].train
    if train.device.type == "cpu" and train.numel() * k > _SMALL_FIT:
        fits = [fit_logistic(train, labels[0], k, c=c)]
        for before, part, label in zip(parts, parts[1:], labels[1:]):
            fits.append(fit_logistic(part.train, label, k, c=c, start=_moved(fits[-1], before, part)))
        return fits
    z, y, weight = _stacked([part.train for part in parts], labels)
    with _few_threads(train.device, z.numel() * k):
        w, b = fit_logistic(z, y, k, c=c, weight=weight)
    return [(w[f, : part.train.shape[1]], b[f]) for f, part in enumerate(parts)]


def _stacked(parts: list[torch.Tensor], labels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features [F, m, r], labels [F, m], weight [F, m]) of F problems of up to m rows and r
    features, zero-padded; weight 1 on each problem's own rows."""
    m, r = max(len(p) for p in parts), max(p.shape[1] for p in parts)
    z = parts[0].new_zeros(len(parts), m, r)
    y = labels[0].new_zeros(len(parts), m)
    weight = parts[0].new_zeros(len(parts), m)
    for f, (part, label) in enumerate(zip(parts, labels)):
        z[f, : len(part), : part.shape[1]], y[f, : len(part)], weight[f, : len(part)] = part, label, 1
    return z, y, weight


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
