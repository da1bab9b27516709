"""Fake statistics for the measures' tests: GateStats' reading interface over raw gate values kept in
memory, so that every measure can be checked against a direct computation on those values."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import torch


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
    ) -> None:
        self.values = {k: np.asarray(v, dtype=np.float32) for k, v in blocks.items()}
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes
        self.class_names = [f"class {k}" for k in range(num_classes)]
        self.gates = [FakeGate(n, i + 1, f"net.{n}", v.shape[1]) for i, (n, v) in enumerate(self.values.items())]
        n = self.labels.size
        self.shard = np.random.default_rng(seed).permutation(n) % shards
        self.shards, self.bins, self.keep = shards, bins, reservoir

    def moments(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v = self.values[name].astype(np.float64)
        s, k, c = self.shards, self.num_classes, v.shape[1]
        group = self.shard * k + self.labels
        count = np.bincount(group, minlength=s * k).reshape(s, k)
        total, total_sq = np.zeros((s * k, c)), np.zeros((s * k, c))
        np.add.at(total, group, v)
        np.add.at(total_sq, group, v * v)
        return tuple(torch.from_numpy(a) for a in (count, total.reshape(s, k, c), total_sq.reshape(s, k, c)))

    def shift(self, name: str) -> torch.Tensor:
        return torch.zeros(self.values[name].shape[1], dtype=torch.float64)  # moments of the values themselves

    def histogram(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Bins on [0, 1] (the last holds 1.0), with GateStats' empty underflow and overflow cells."""
        v = self.values[name].astype(np.float64)
        b = np.minimum(np.floor(v * self.bins).astype(np.int64), self.bins - 1) + 1
        k, c, cells = self.num_classes, v.shape[1], self.bins + 2
        flat = (self.labels[:, None] * c + np.arange(c)) * cells + b
        counts = np.bincount(flat.ravel(), minlength=k * c * cells).reshape(k, c, cells)
        return torch.from_numpy(counts), torch.linspace(0, 1, self.bins + 1, dtype=torch.float64).expand(c, -1)

    def saturation(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        v, k = self.values[name], self.num_classes
        return tuple(torch.from_numpy(np.stack([(v[self.labels == c] >= t if hi else v[self.labels == c] <= t).sum(0)
                                                for c in range(k)])) for t, hi in ((0.9, True), (0.1, False)))

    def reservoir(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = np.concatenate([np.flatnonzero(self.labels == k)[: self.keep] for k in range(self.num_classes)])
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
