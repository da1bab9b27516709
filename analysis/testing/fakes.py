"""Fake statistics for the measures' tests: GateStats' reading interface over raw gate values kept in
memory, so that every measure can be checked against a direct computation on those values."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from analysis.capture.config import StatsConfig
from analysis.capture.keys import pseudo_labels
from analysis.capture.ranges import shift_and_quantiles, histogram_edges


@dataclass(frozen=True)
class FakeGate:
    name: str
    depth: int
    path: str
    channels: int


class FakeStats:
    """GateStats' reading interface, computed here from raw gate values kept in memory.

    blocks: name -> values [N, C] in [0, 1] (listed in forward order); labels [N]. Samples go to
    shards round-robin after a seeded shuffle; the reservoir keeps the first R samples of each class.
    Moments of x - shift (shift: the first 64 samples' mean), P pseudo-labellings (sample id = row
    index), histograms over each channel's bins as GateStats draws them from a first batch (here the
    first 256 samples: equiprobable on them, the range widened) with under/overflow bins,
    exact saturation counts; no squeeze inputs.
    """

    def __init__(
        self,
        blocks: dict[str, np.ndarray],
        labels: np.ndarray,
        num_classes: int,
        *,
        shards: int = 8,
        bins: int = 20,
        reservoir: int = 16,
        seed: int = 0,
        permutations: int = 8,
    ) -> None:
        self.values = {k: np.asarray(v, dtype=np.float32) for k, v in blocks.items()}
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes
        self.class_names = [f"class {k}" for k in range(num_classes)]
        self.gates = [FakeGate(n, i + 1, f"net.{n}", v.shape[1]) for i, (n, v) in enumerate(self.values.items())]
        self.config = StatsConfig(num_classes, bins=bins, reservoir=reservoir, shards=shards, seed=seed,
                                  permutations=permutations)
        self.inputs = None
        self.shard = np.random.default_rng(seed).permutation(self.labels.size) % shards

    def shift(self, name: str) -> torch.Tensor:
        first = self.values[name][:64].astype(np.float64)
        return torch.from_numpy(first.mean(0) if len(first) else np.zeros(first.shape[1]))

    def _moments(self, name: str, groups: np.ndarray, rows: int) -> tuple[torch.Tensor, ...]:
        """Moments of x - shift per row of `groups` [N] in 0..rows*K-1."""
        v = self.values[name].astype(np.float64) - self.shift(name).numpy()
        k, c = self.num_classes, v.shape[1]
        count = np.bincount(groups, minlength=rows * k).reshape(rows, k)
        total, total_sq = np.zeros((rows * k, c)), np.zeros((rows * k, c))
        np.add.at(total, groups, v)
        np.add.at(total_sq, groups, v * v)
        return tuple(torch.from_numpy(a) for a in (count, total.reshape(rows, k, c), total_sq.reshape(rows, k, c)))

    def pseudo(self, p: int) -> np.ndarray:
        return pseudo_labels(torch.arange(self.labels.size), p, self.num_classes, self.config.seed).numpy()

    def perm_moments(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [self._moments(name, self.pseudo(p), 1) for p in range(self.config.permutations)]
        if not parts:  # no relabellings: empty tables, as GateStats gives them
            k, c = self.num_classes, self.values[name].shape[1]
            return torch.zeros(0, k, dtype=torch.int64), torch.zeros(0, k, c, dtype=torch.float32)
        return torch.cat([part[0] for part in parts]), torch.cat([part[1] for part in parts]).float()

    def edges(self, name: str) -> np.ndarray:
        """[C, B + 1]: GateStats' edges (`ranges`) with the first 256 samples as the first batch."""
        first = torch.from_numpy(self.values[name][:256].astype(np.float64))
        if len(first) == 0:
            first = torch.tensor([[0.0], [1.0]], dtype=torch.float64).expand(2, first.shape[1])
        return histogram_edges(shift_and_quantiles(first, self.config.bins)[1], bounded=True).numpy()

    def saturation(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        v, k = self.values[name], self.num_classes
        per_class = [(v[self.labels == j] >= 0.9).sum(0) for j in range(k)], [(v[self.labels == j] <= 0.1).sum(0) for j in range(k)]
        return tuple(torch.from_numpy(np.stack(x).astype(np.int64)) for x in per_class)

    def moments(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._moments(name, self.shard * self.num_classes + self.labels, self.config.shards)

    def histogram(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        v, e = self.values[name].astype(np.float64), self.edges(name)
        k, c = self.num_classes, v.shape[1]
        b = np.stack([np.searchsorted(e[j], v[:, j], side="right") for j in range(c)], 1)  # 0 under, B+1 over
        cells = self.config.bins + 2
        flat = (self.labels[:, None] * c + np.arange(c)) * cells + b
        counts = np.bincount(flat.ravel(), minlength=k * c * cells).reshape(k, c, cells)
        return torch.from_numpy(counts), torch.from_numpy(e)

    def reservoir(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        keep = self.config.reservoir
        ids = np.concatenate([np.flatnonzero(self.labels == k)[:keep] for k in range(self.num_classes)])
        return torch.from_numpy(self.values[name][ids]), torch.from_numpy(self.labels[ids]), torch.from_numpy(ids)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def balanced_labels(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % k)


def planted(labels: np.ndarray, k: int, c: int, effect: float, rng: np.random.Generator) -> np.ndarray:
    """Gates sigmoid(base + effect * pattern[class] + noise): a per-channel baseline shared by all
    classes, and a class-specific part in proportion to `effect`."""
    base, pattern = rng.normal(size=c), rng.normal(size=(k, c))
    return sigmoid(base + effect * pattern[labels] + 0.5 * rng.normal(size=(labels.size, c)))


def raw_eta2(v: np.ndarray, y: np.ndarray) -> float:
    grand = v.mean()
    ss_t = ((v - grand) ** 2).sum()
    ss_b = sum((y == k).sum() * (v[y == k].mean() - grand) ** 2 for k in np.unique(y))
    return ss_b / ss_t


@cache
def mixed() -> FakeStats:
    """Unbalanced classes (class 4 has no samples), channels with graded class effects."""
    rng = np.random.default_rng(1)
    y = rng.choice(4, size=900, p=[0.4, 0.3, 0.2, 0.1])
    v = planted(y, 5, 6, 0.0, rng)
    v[:, :3] = planted(y, 5, 3, 0.3, rng)  # weak effects in the first three channels
    return FakeStats({"SE_1": v, "SE_2": planted(y, 5, 4, 1.0, rng)}, y, num_classes=5, shards=4)


@cache
def constant() -> FakeStats:
    """Constant gates: 0.7 everywhere, 1 everywhere, and one channel of each."""
    rng = np.random.default_rng(3)
    y = balanced_labels(600, 3, rng)
    return FakeStats(
        {"SE_1": np.full((600, 5), 0.7), "SE_2": np.ones((600, 4)), "SE_3": np.c_[np.full(600, 0.7), np.ones(600)]},
        y,
        num_classes=3,
    )


@cache
def depth_model() -> FakeStats:
    """Four blocks: no class effect in the first two, a strong one in the last two."""
    rng = np.random.default_rng(4)
    y = balanced_labels(2000, 10, rng)
    blocks = {
        "SE_2_1": planted(y, 10, 24, 0.0, rng),
        "SE_2_2": planted(y, 10, 24, 0.0, rng),
        "SE_3_1": planted(y, 10, 32, 2.0, rng),
        "SE_3_2": planted(y, 10, 32, 3.0, rng),
    }
    return FakeStats(blocks, y, num_classes=10, reservoir=30)


def sklearn_fold_correct(x: np.ndarray, y: np.ndarray, fold: np.ndarray) -> int:
    """Test predictions scikit-learn's L2 logistic regression gets right over the folds `fold`
    (standardised on each training part, as the probe does): the probe's independent reference."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    correct = 0
    for f in np.unique(fold):
        tr, te = fold != f, fold == f
        scale = StandardScaler().fit(x[tr].astype(np.float64))
        model = LogisticRegression(C=1.0, tol=1e-8, max_iter=10000).fit(scale.transform(x[tr]), y[tr])
        correct += int((model.predict(scale.transform(x[te])) == y[te]).sum())
    return correct
