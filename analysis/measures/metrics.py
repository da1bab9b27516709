"""Metrics: pure functions from gate statistics to tidy pandas tables.

The paper's "Role of Excitation" study compared class-mean gate curves by eye. These functions turn
the streaming statistics of every SE gate into numbers with their chance levels beside them, so that
"class-specific" means "more than finite samples give by chance".

Inputs, per gate, as CPU tensors (K classes, C channels, S shards, B bins):

* `count [S, K]` int64, `sum [S, K, C]` and `sumsq [S, K, C]` float64: moments per shard and class;
* `hist [K, C, B]` int64 (any integer dtype): counts over B equal-width bins on [0, 1] (bin b is
  [b/B, (b+1)/B), the last bin includes 1);
* reservoir `values [n, C]` float32 with `labels [n]` int64: up to R whole gate vectors per class.

The functional core (`anova`, `eta_squared`, `f_test`, `selectivity`, `mutual_information_bits`,
`benjamini_hochberg`, `eta2_jackknife`, `probe`, `stratified_folds`, `saturation`,
`mean_pairwise_cosine`) takes those tensors (or NumPy arrays), returns NumPy arrays and is vectorised
over channels; `channel_table`, `block_table` and `class_mean_table` read a GateStats-like object
(`gates`, `num_classes`, `class_names`, `moments`, `histogram`, `reservoir`). At ImageNet scale (K =
1000, 15k channels in 16 blocks) channel_table + block_table take under 5 s on two cores
(bench/metrics_scale.py); the big passes run on as many threads as `torch.get_num_threads()`.

Conventions

* Classes with no samples are ignored everywhere; K' is the number of classes with samples.
* A channel is *constant* when its total sum of squares is at most `CONSTANT_RTOL` times its raw
  sum of squares (std below ~3e-6 of its root mean square: float64 rounding noise of sums over
  millions of samples). A constant channel has zero specificity on every measure: eta2 = 0, F = 0,
  p = 1, selectivity = 0, MI = 0, std = 0, and its preferred class is the first class with samples.
  A single class's within-class sum of squares below the same relative tolerance is exactly 0.

Channel table (`channel_table`), one row per (gate, channel), blocks in depth order:

* `block` (str): gate name; `depth` (int): 1-based forward position; `channel` (int): index.
* `eta2`: eta-squared, between-class / total sum of squares, in [0, 1].
* `F`, `p_value`: one-way ANOVA F statistic (K'-1, N-K' degrees of freedom) and its upper-tail
  p-value. F = inf and p = 0 when every class is constant but the classes differ. NaN (both) when
  the test is undefined for a non-constant channel: fewer than 2 classes, or N <= K'.
* `significant` (bool): Benjamini-Hochberg FDR at q (default 0.05) within the block over its
  channels' p-values; an undefined p-value counts as 1.
* `selectivity`: class selectivity index of Morcos et al. 2018, (mu_max - mu_rest) / (mu_max +
  mu_rest), mu_max the largest class mean, mu_rest the mean of the other class means; 0 when the
  denominator is 0 or K' < 2. In [0, 1] for gates in [0, 1].
* `mi_bits`: mutual information between class and the binned gate, in bits, each entropy with the
  Miller-Madow correction H + (m - 1) / (2N) nats, m its number of non-empty cells. The correction
  removes most of the upward bias of the plug-in estimate, so a channel without class information
  scatters around 0 and may be slightly negative: it is not clipped, so that block means stay
  unbiased. Exactly 0 for a gate whose values all lie in one bin.
* `preferred_class` (int), `preferred_class_name` (str): the class with the largest mean.
* `mean`, `std`: mean and population standard deviation over all N samples (NaN without samples).
* `sat_high`, `sat_low`: share of the channel's values >= 0.9 and <= 0.1, from the histogram. When
  0.9 and 0.1 are bin edges (B a multiple of 10) this is exact, except that a value exactly 0.1
  counts as above (it falls in the bin starting at 0.1); otherwise the bin holding the threshold is
  split linearly (values assumed uniform inside it). NaN without samples.

Block table (`block_table`), one row per gate in depth order:

* `block`, `depth`, `rel_depth` (depth / number of gates), `path` (hooked module), `channels` (C),
  `samples` (N), `classes` (K').
* `eta2_mean`: mean eta2 over channels; `eta2_null` = (K'-1)/(N-1), its expectation without any
  class effect (0 when K' < 2); `eta2_excess` = eta2_mean - eta2_null.
* `eta2_ci_low`, `eta2_ci_high`: 95% delete-one-shard jackknife interval of eta2_mean, estimate
  +- 1.96 SE with SE^2 = (S-1)/S sum_s (theta_s - mean theta)^2 over the S leave-one-shard-out
  estimates theta_s. NaN when S < 2 or some leave-one-out keeps fewer than 2 samples.
* `frac_significant`: share of channels significant after BH-FDR at q; `selectivity_median`:
  median channel selectivity; `mi_bits_mean`: mean channel MI in bits.
* `class_cosine_mean`: mean pairwise cosine similarity of the K' class-mean gate vectors (the
  paper's "curves overlap"); `class_corr_mean`: the same for Pearson correlation across channels,
  which ignores the shared positive offset of the gates and so discriminates better. Both are 1
  when K' < 2. A zero vector (cosine) or a constant profile (correlation) counts as identical to
  another such and as 0 to any other.
* `probe_acc`, `probe_chance`, `probe_p`: stratified k-fold accuracy of a nearest-class-mean probe on
  the reservoir gate vectors standardised with training-fold statistics, the accuracy of always
  predicting the training fold's most frequent class (mean over folds), and the one-sided binomial
  p-value of the correct predictions against that chance. With more than `probe_max_classes`
  (default 128) classes in the reservoir, the probe uses a seeded random subset of that many
  classes, and the chance level is the subset's (see `probe` for why). NaN when the reservoir holds
  fewer than 2 classes or fewer samples than folds.
* `sat_high`, `sat_low`: the channels' mean `sat_high` and `sat_low` (= the block's share, since every
  channel sees the same samples). NaN without samples.
* `gate_mean`, `gate_std`: mean and population std of all N*C gate values of the block, pooled from
  the channels' means and stds (NaN without samples).

Class-mean table (`class_mean_table`), long form, one row per (gate, class with samples, channel):
`block` (categorical), `class` (int32), `class_name` (categorical), `channel` (int32), `mean`,
`std` (population, within the class), `count` (int64, samples of the class).

Onset (`find_onset`, `OnsetRule`, defaults `ONSET_MIN_EXCESS`, `ONSET_MIN_FRAC_SIGNIFICANT`, and
`ONSET_RULE` in words): the first block in depth order whose class-specificity clearly exceeds its
null; see `OnsetRule`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol, TypeVar

import numpy as np
import pandas as pd
import torch
from scipy import sparse
from scipy import stats as sps
from scipy.special import xlogy

Array = np.ndarray | torch.Tensor  # CPU tensors and NumPy arrays are both read without a copy
R = TypeVar("R")

CONSTANT_RTOL = 1e-11  # a sum of squares below this share of the raw sum of squares is rounding noise
PROBE_STD_FLOOR = 1e-6  # smallest feature std used to standardise the probe's inputs
PROBE_MAX_CLASSES = 128  # the probe's cost grows with classes^2; see `probe`
ONSET_MIN_EXCESS = 0.1  # default effect size of the onset rule, in eta2 units above the null
ONSET_MIN_FRAC_SIGNIFICANT = 0.5  # default share of FDR-significant channels of the onset rule
ONSET_RULE = (
    "first block in depth order with eta2_ci_low - eta2_null > min_excess (eta2_excess where the "
    "interval is NaN) and frac_significant >= 0.5"
)  # the default rule in words, for run metadata
_Z95 = 1.959963984540054  # two-sided 95% normal quantile
_CHUNK = 1 << 18  # histogram elements per step of the histogram pass (2 MiB of int64: stays in cache)


class GateLike(Protocol):
    """What the tables read from a gate description."""

    name: str
    depth: int
    path: str


class StatsLike(Protocol):
    """What the tables read from GateStats; tensors come back on the CPU."""

    gates: Sequence[GateLike]
    num_classes: int
    class_names: Sequence[str]

    def moments(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...

    def histogram(self, name: str) -> torch.Tensor: ...

    def reservoir(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...


def _np(x: Array) -> np.ndarray:
    """NumPy view of a CPU tensor or array."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _parallel(fn: Callable[[np.ndarray], R], n: int) -> list[R]:
    """fn over contiguous parts of range(n), on as many threads as torch uses for intra-op work
    (NumPy releases the GIL inside its loops, so this divides the wall time of the big passes)."""
    parts = np.array_split(np.arange(n), max(1, min(torch.get_num_threads(), n)))
    if len(parts) == 1:
        return [fn(parts[0])]
    with ThreadPoolExecutor(len(parts)) as pool:
        return list(pool.map(fn, parts))


# ---------------------------------------------------------------------------------- functional core


class Anova(NamedTuple):
    """A one-way layout per channel: class means [K, C] (0 for empty classes), the rest [C]."""

    n: float  # samples
    classes: int  # classes with samples
    means: np.ndarray
    ss_between: np.ndarray
    ss_within: np.ndarray
    constant: np.ndarray  # bool: no variation beyond rounding; both sums of squares are 0 there


def anova(count: Array, total: Array, total_sq: Array) -> Anova:
    """Between- and within-class sums of squares from per-class moments, in float64.

    Each class's within sum of squares is sumsq_k - sum_k^2 / n_k (clamped at 0), which cancels
    only within one class; between is sum n_k (mean_k - mean)^2; the total is their sum, never the
    badly cancelling sumsq - sum^2 / N. count [K], total and total_sq [K, C].
    """
    n_k = _np(count).astype(np.float64)
    t = _np(total).astype(np.float64, copy=False)
    tq = _np(total_sq).astype(np.float64, copy=False)
    inv = np.divide(1.0, n_k, out=np.zeros_like(n_k), where=n_k > 0)[:, None]
    means = t * inv
    ss = t * means
    np.subtract(tq, ss, out=ss)
    np.maximum(ss, 0.0, out=ss)
    ss[ss <= CONSTANT_RTOL * tq] = 0.0
    ss_within = ss.sum(0)
    n = float(n_k.sum())
    dev = means - t.sum(0) / max(n, 1.0)
    dev *= dev
    dev *= n_k[:, None]
    ss_between = dev.sum(0)
    constant = ss_within + ss_between <= CONSTANT_RTOL * tq.sum(0)
    ss_within[constant] = 0.0
    ss_between[constant] = 0.0
    return Anova(n, int((n_k > 0).sum()), means, ss_between, ss_within, constant)


def eta_squared(a: Anova) -> np.ndarray:
    """Between / total sum of squares per channel, 0 for a constant channel: [C] float64."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a.constant, 0.0, a.ss_between / (a.ss_between + a.ss_within))


def f_test(a: Anova) -> tuple[np.ndarray, np.ndarray]:
    """One-way ANOVA F and its upper-tail p-value per channel: [C], [C].

    Constant channel: F = 0, p = 1. Constant within every class but not overall: F = inf, p = 0.
    No degrees of freedom (K' < 2 or N <= K') for a non-constant channel: NaN.
    """
    k, n = a.classes, a.n
    if k < 2 or n <= k:
        nan = np.full(a.constant.shape, np.nan)
        return np.where(a.constant, 0.0, nan), np.where(a.constant, 1.0, nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(a.ss_within > 0, (a.ss_between / (k - 1)) / (a.ss_within / (n - k)), np.inf)
    f[a.constant] = 0.0
    return f, sps.f.sf(f, k - 1, n - k)


def selectivity(class_means: Array) -> np.ndarray:
    """Morcos et al. 2018 class selectivity index per channel: class_means [K', C] -> [C].

    (mu_max - mu_rest) / (mu_max + mu_rest) over the given classes; 0 with fewer than 2 classes or
    a zero denominator.
    """
    m = _np(class_means).astype(np.float64, copy=False)
    k = m.shape[0]
    if k < 2:
        return np.zeros(m.shape[1])
    mu_max = m.max(0)
    mu_rest = (m.sum(0) - mu_max) / (k - 1)
    denom = mu_max + mu_rest
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom != 0, (mu_max - mu_rest) / denom, 0.0)


def _nlogn_table(top: int) -> np.ndarray:
    """n ln n for n = 0..top (0 ln 0 = 0), to replace a log per histogram cell by a lookup."""
    n = np.arange(top + 1, dtype=np.float64)
    return xlogy(n, n)


def _histogram_sums(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One pass over hist [k, C, B], a few classes at a time so each step stays in cache.

    -> (sum over classes of n ln n [C, B], non-empty cells [C, B], bin totals [C, B], class totals
    [k, C]).
    """
    k, c, b = h.shape
    nlogn, cells = np.zeros((c, b)), np.zeros((c, b), dtype=np.int64)
    bins, per_class = np.zeros((c, b), dtype=np.int64), np.empty((k, c), dtype=np.int64)
    table = _nlogn_table(0)
    step = max(1, _CHUNK // max(1, c * b))
    for lo in range(0, k, step):
        x = h[lo : lo + step]
        per_class[lo : lo + step] = np.einsum("kcb->kc", x)  # einsum: 3x faster than sum(2) here
        top = int(per_class[lo : lo + step].max(initial=0))
        if top >= table.size:
            table = _nlogn_table(2 * top)
        nlogn += np.take(table, x).sum(0)
        cells += (x > 0).view(np.uint8).sum(0, dtype=np.int32)
        bins += x.sum(0)
    return nlogn, cells, bins, per_class


def _histogram_pass(hist: Array) -> tuple[np.ndarray, np.ndarray]:
    """(MI in bits [C], bin totals [C, B]) from hist [K, C, B], class ranges on parallel threads."""
    h = _np(hist)
    sums = _parallel(lambda idx: _histogram_sums(h[idx[0] : idx[-1] + 1]), h.shape[0])
    nlogn_joint = sum(s[0] for s in sums).sum(1)
    cells_joint = sum(s[1] for s in sums).sum(1)
    bins = sum(s[2] for s in sums)
    per_class = np.concatenate([s[3] for s in sums])
    n = bins.sum(1).astype(np.float64)
    m_gate, m_class = np.count_nonzero(bins, axis=1), np.count_nonzero(per_class, axis=0)
    nlogn = nlogn_joint - xlogy(bins, bins).sum(1) - xlogy(per_class, per_class).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        nats = np.log(n) + nlogn / n + (m_gate + m_class - cells_joint - 1) / (2 * n)
    return np.where(m_gate <= 1, 0.0, nats / math.log(2)), bins


def mutual_information_bits(hist: Array) -> np.ndarray:
    """MI between class and binned gate per channel, in bits, Miller-Madow corrected per entropy.

    MI = H(G) + H(Y) - H(G, Y), H = ln N - sum n ln n / N + (m - 1) / (2N) nats with m non-empty
    cells; the ln N terms cancel. Exactly 0 where all values share one bin. hist [K, C, B] -> [C].
    """
    return _histogram_pass(hist)[0]


def saturation(bin_counts: Array, *, low: float = 0.1, high: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """(share >= high, share <= low) of gate values from counts over B bins on [0, 1]: [..., B] -> [...].

    Exact when a threshold is a bin edge (a value exactly on `low` then counts as above it);
    otherwise the bin holding it is split linearly, as if its values were uniform. NaN without values.
    """
    counts = _np(bin_counts).astype(np.float64)
    b = counts.shape[-1]

    def below(x: float) -> np.ndarray:
        pos = x * b
        pos = float(round(pos)) if abs(pos - round(pos)) < 1e-9 else pos
        j = min(math.floor(pos), b - 1)
        return counts[..., :j].sum(-1) + (pos - j) * counts[..., j]

    with np.errstate(divide="ignore", invalid="ignore"):
        total = counts.sum(-1)
        return 1.0 - below(high) / total, below(low) / total


def benjamini_hochberg(p: Array, q: float = 0.05) -> np.ndarray:
    """Benjamini-Hochberg step-up rejections at FDR q: p [m] -> bool [m]; NaN counts as p = 1."""
    p = _np(p).astype(np.float64)
    p = np.where(np.isnan(p), 1.0, p)
    m = p.size
    order = np.argsort(p, kind="stable")
    passed = np.flatnonzero(p[order] <= q * np.arange(1, m + 1) / m)
    reject = np.zeros(m, dtype=bool)
    if passed.size:
        reject[order[: passed[-1] + 1]] = True
    return reject


def eta2_jackknife(
    count: Array, total: Array, total_sq: Array, *, estimate: float | None = None, z: float = _Z95
) -> tuple[float, float]:
    """Delete-one-shard jackknife interval (low, high) of the channel-mean eta2.

    theta_s is the channel-mean eta2 with shard s removed (totals minus shard s); SE^2 = (S-1)/S
    sum (theta_s - mean theta)^2; the interval is `estimate` (the all-data channel-mean eta2,
    computed when not given) +- z SE. NaN when S < 2 or a leave-one-out has fewer than 2 samples.
    count [S, K], total and total_sq [S, K, C].
    """
    t = _np(total).astype(np.float64, copy=False)
    return _jackknife(_np(count), t, _np(total_sq), t.sum(0), estimate, z)


def _jackknife(
    count: np.ndarray, t: np.ndarray, tq: np.ndarray, t_all: np.ndarray, estimate: float | None, z: float
) -> tuple[float, float]:
    """`eta2_jackknife` given t_all = t.sum(0) [K, C]. One pass over [K, C] per shard, shards on
    parallel threads: sum_k (T_k - t_sk)^2 / n_k is formed directly; the leave-one-out total sum of
    squares is sumsq - sum^2 / N (its rounding, ~1e-16 of sumsq, is far below CONSTANT_RTOL)."""
    cnt = count.astype(np.float64)
    tq = tq.astype(np.float64, copy=False)
    s = t.shape[0]
    n_loo = cnt.sum(0) - cnt
    if s < 2 or bool((n_loo.sum(1) < 2).any()):
        return math.nan, math.nan
    if estimate is None:
        estimate = float(eta_squared(anova(cnt.sum(0), t_all, tq.sum(0))).mean())
    w = np.divide(1.0, n_loo, out=np.zeros_like(n_loo), where=n_loo > 0)

    def leave_out(shards: np.ndarray) -> np.ndarray:
        """[len(shards), 3, C]: sum_k (T_k - t_sk)^2 / n_k, sum_k t_sk, sum_k tq_sk."""
        out, d = np.empty((shards.size, 3, t.shape[2])), np.empty_like(t_all)
        for j, i in enumerate(shards):
            np.subtract(t_all, t[i], out=d)
            d *= d
            out[j] = np.einsum("k,kc->c", w[i], d), t[i].sum(0), tq[i].sum(0)
        return out

    sums = np.concatenate(_parallel(leave_out, s))
    mean_sq, shard_t, shard_tq = sums[:, 0], sums[:, 1], sums[:, 2]
    grand_sq = (shard_t.sum(0) - shard_t) ** 2 / n_loo.sum(1, keepdims=True)
    raw = shard_tq.sum(0) - shard_tq
    ss_between = np.maximum(mean_sq - grand_sq, 0.0)
    ss_total = np.maximum(raw - grand_sq, 0.0)
    constant = ss_total <= CONSTANT_RTOL * raw
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.where(constant, 0.0, np.minimum(ss_between / ss_total, 1.0)).mean(1)
    se = math.sqrt((s - 1) / s * float(((theta - theta.mean()) ** 2).sum()))
    return estimate - z * se, estimate + z * se


class Probe(NamedTuple):
    """Cross-validated linear probe: accuracy, chance accuracy, one-sided binomial p-value."""

    accuracy: float
    chance: float
    p_value: float


def stratified_folds(labels: Array, folds: int, seed: int) -> np.ndarray:
    """Fold index per sample: within each class a seeded shuffle, dealt round-robin. [n] -> [n]."""
    y = _np(labels)
    perm = np.random.default_rng(seed).permutation(y.size)
    order = perm[np.argsort(y[perm], kind="stable")]
    fold = np.empty(y.size, dtype=np.int64)
    fold[order] = np.arange(y.size) % folds
    return fold


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
    x = _np(values)
    y = _np(labels).astype(np.int64, copy=False)
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


def mean_pairwise_cosine(rows: Array, *, centre: bool = False) -> float:
    """Mean cosine similarity over all pairs of distinct rows; with `centre`, Pearson correlation.

    The sum over pairs is |sum_i u_i|^2 - sum_i |u_i|^2 for the unit rows u_i, one matrix-vector
    product, no M x M matrix and no centred copy. A zero row (cosine), or a constant row (correlation:
    centred norm^2 <= 1e-12 of the norm^2), counts as identical to other such rows and as 0 to the
    rest. 1 with fewer than 2 rows. rows [M, C] -> float.
    """
    x = _np(rows).astype(np.float64, copy=False)
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


# ------------------------------------------------------------------------------------- tables


def _ordered_gates(stats: StatsLike) -> list[GateLike]:
    """Gates in forward (depth) order, the order of every table."""
    return sorted(stats.gates, key=lambda g: g.depth)


def _totals(stats: StatsLike, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(count [K], sum [K, C], sumsq [K, C]) of one gate, summed over shards."""
    count, total, total_sq = stats.moments(name)
    return _np(count).sum(0), _np(total).sum(0), _np(total_sq).sum(0)


def _gate_channels(stats: StatsLike, gate: GateLike, q: float) -> pd.DataFrame:
    """Channel table rows of one gate."""
    n_k, t, tq = _totals(stats, gate.name)
    a = anova(n_k, t, tq)
    f, p = f_test(a)
    present = n_k > 0
    preferred = np.where(present[:, None], a.means, -np.inf).argmax(0)
    preferred[a.constant] = present.argmax()
    sel = selectivity(a.means[present])
    sel[a.constant] = 0.0
    mi, bins = _histogram_pass(stats.histogram(gate.name))
    sat_high, sat_low = saturation(bins)
    c = t.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = t.sum(0) / a.n
        std = np.sqrt((a.ss_between + a.ss_within) / a.n)
    return pd.DataFrame(
        {
            "block": gate.name,
            "depth": np.full(c, gate.depth, dtype=np.int64),
            "channel": np.arange(c, dtype=np.int64),
            "eta2": eta_squared(a),
            "F": f,
            "p_value": p,
            "significant": benjamini_hochberg(p, q),
            "selectivity": sel,
            "mi_bits": mi,
            "preferred_class": preferred.astype(np.int64),
            "preferred_class_name": np.asarray(stats.class_names, dtype=object)[preferred],
            "mean": mean,
            "std": std,
            "sat_high": sat_high,
            "sat_low": sat_low,
        }
    )


def channel_table(stats: StatsLike, *, q: float = 0.05) -> pd.DataFrame:
    """One row per (gate, channel), gates in depth order; columns in the module docstring."""
    return pd.concat([_gate_channels(stats, g, q) for g in _ordered_gates(stats)], ignore_index=True)


def block_table(
    stats: StatsLike,
    *,
    q: float = 0.05,
    probe_folds: int = 5,
    seed: int = 0,
    probe_max_classes: int | None = PROBE_MAX_CLASSES,
    channels: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per gate in depth order; columns in the module docstring.

    Pass `channels=channel_table(stats)` when it is at hand: the block table is built from it and
    the moments and reservoirs only (the histograms are not read again); significance is redone at
    this `q` from its p-values.
    """
    gates = _ordered_gates(stats)
    if channels is None:
        channels = channel_table(stats, q=q)
    by_block = dict(tuple(channels.groupby("block", sort=False, observed=True)))
    rows = []
    for gate in gates:
        ch = by_block[gate.name].sort_values("channel")
        count, total, total_sq = (_np(m) for m in stats.moments(gate.name))
        total = total.astype(np.float64, copy=False)
        n_k, t = count.sum(0), total.sum(0)
        n, k_present, c = float(n_k.sum()), int((n_k > 0).sum()), t.shape[1]
        eta2_mean = float(ch["eta2"].mean())
        eta2_null = (k_present - 1) / (n - 1) if k_present > 1 else 0.0
        ci_low, ci_high = _jackknife(count, total, total_sq, t, eta2_mean, _Z95)
        present = n_k > 0
        profiles = t[present] / n_k[present, None]
        values, labels, _ = stats.reservoir(gate.name)
        pr = probe(values, labels, folds=probe_folds, seed=seed, max_classes=probe_max_classes)
        means, stds = ch["mean"].to_numpy(), ch["std"].to_numpy()
        gate_mean = float(means.mean())
        rows.append(
            {
                "block": gate.name,
                "depth": gate.depth,
                "rel_depth": gate.depth / len(gates),
                "path": gate.path,
                "channels": c,
                "samples": int(n),
                "classes": k_present,
                "eta2_mean": eta2_mean,
                "eta2_null": eta2_null,
                "eta2_excess": eta2_mean - eta2_null,
                "eta2_ci_low": ci_low,
                "eta2_ci_high": ci_high,
                "frac_significant": float(benjamini_hochberg(ch["p_value"].to_numpy(), q).mean()),
                "selectivity_median": float(ch["selectivity"].median()),
                "mi_bits_mean": float(ch["mi_bits"].mean()),
                "class_cosine_mean": mean_pairwise_cosine(profiles),
                "class_corr_mean": mean_pairwise_cosine(profiles, centre=True),
                "probe_acc": pr.accuracy,
                "probe_chance": pr.chance,
                "probe_p": pr.p_value,
                "sat_high": float(ch["sat_high"].mean()),
                "sat_low": float(ch["sat_low"].mean()),
                "gate_mean": gate_mean,
                "gate_std": math.sqrt(float((stds**2 + (means - gate_mean) ** 2).mean())),
            }
        )
    return pd.DataFrame(rows)


def class_mean_table(stats: StatsLike) -> pd.DataFrame:
    """Long-form class means: one row per (gate, class with samples, channel), built from arrays.

    At ImageNet scale this is 15M rows, so the float columns are written in place into arrays sized
    by a first look at the class counts, and the frame takes them without a copy.
    """
    gates = _ordered_gates(stats)
    names, name_code = np.unique(np.asarray(stats.class_names, dtype=str), return_inverse=True)
    layout = []  # per gate: (classes with samples, their counts, channels)
    for gate in gates:
        count, total, _ = stats.moments(gate.name)
        n_k = _np(count).sum(0)
        present = np.flatnonzero(n_k > 0)
        layout.append((present, n_k[present], total.shape[-1]))
    edges = np.cumsum([0] + [p.size * c for p, _, c in layout])
    mean, std = np.empty(edges[-1]), np.empty(edges[-1])
    for i, gate in enumerate(gates):
        present, n, c = layout[i]
        _, t, tq = _totals(stats, gate.name)
        t, tq, n = t[present], tq[present], n[:, None].astype(np.float64)
        m = np.divide(t, n, out=mean[edges[i] : edges[i + 1]].reshape(-1, c))
        ss = np.maximum(tq - t * m, 0.0)
        ss[ss <= CONSTANT_RTOL * tq] = 0.0
        np.sqrt(ss / n, out=std[edges[i] : edges[i + 1]].reshape(-1, c))
    classes = np.concatenate([np.repeat(p.astype(np.int32), c) for p, _, c in layout])
    return pd.DataFrame(
        {
            "block": pd.Categorical.from_codes(
                np.repeat(np.arange(len(gates), dtype=np.int32), np.diff(edges)), categories=[g.name for g in gates]
            ),
            "class": classes,
            "class_name": pd.Categorical.from_codes(name_code[classes], categories=names),
            "channel": np.concatenate([np.tile(np.arange(c, dtype=np.int32), p.size) for p, _, c in layout]),
            "mean": mean,
            "std": std,
            "count": np.concatenate([np.repeat(n.astype(np.int64), c) for _, n, c in layout]),
        },
        copy=False,  # the arrays are ours: no 15M-row copy into consolidated blocks
    )


# ------------------------------------------------------------------------------------- onset


@dataclass(frozen=True)
class OnsetRule:
    """Where gating becomes class-specific: the first block, in depth order, that passes both tests.

    * specificity: with rule "ci", `eta2_ci_low - eta2_null > min_excess` (the whole jackknife
      interval lies that far above chance; where the interval is NaN, `eta2_excess` stands in); with
      rule "point", `eta2_excess > min_excess`;
    * breadth: `frac_significant >= min_frac_significant` (most channels are class-specific after
      FDR control, so that a few outlier channels do not make a block specific).
    """

    min_excess: float = ONSET_MIN_EXCESS
    min_frac_significant: float = ONSET_MIN_FRAC_SIGNIFICANT
    rule: Literal["ci", "point"] = "ci"

    def passes(self, blocks: pd.DataFrame) -> pd.Series:
        """Per block row, whether it satisfies the rule -> bool Series aligned with `blocks`."""
        if self.rule == "ci":
            excess = (blocks["eta2_ci_low"] - blocks["eta2_null"]).fillna(blocks["eta2_excess"])
        elif self.rule == "point":
            excess = blocks["eta2_excess"]
        else:
            raise ValueError(f"unknown onset rule {self.rule!r}; use 'ci' or 'point'.")
        return (excess > self.min_excess) & (blocks["frac_significant"] >= self.min_frac_significant)

    def onset(self, blocks: pd.DataFrame) -> str | None:
        """Name of the first passing block in depth order, or None."""
        ordered = blocks.sort_values("depth", kind="stable")
        hits = ordered["block"][self.passes(ordered)]
        return None if hits.empty else str(hits.iloc[0])


def find_onset(
    blocks: pd.DataFrame,
    *,
    min_excess: float = ONSET_MIN_EXCESS,
    rule: Literal["ci", "point"] = "ci",
    min_frac_significant: float = ONSET_MIN_FRAC_SIGNIFICANT,
) -> str | None:
    """Onset block of a `block_table` under `OnsetRule(min_excess, min_frac_significant, rule)`."""
    return OnsetRule(min_excess, min_frac_significant, rule).onset(blocks)
