"""The linear probe on planted and on random gate vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fakes import balanced_labels, planted

from analysis.measures.probe import probe, stratified_folds


def test_probe_separates_planted_classes_is_deterministic_and_subsamples_classes() -> None:
    rng = np.random.default_rng(6)
    y = balanced_labels(400, 8, rng)
    x = planted(y, 8, 20, 3.0, rng).astype(np.float32)
    first = probe(x, y, folds=5, seed=1)
    assert first == probe(torch.from_numpy(x), torch.from_numpy(y), folds=5, seed=1)
    assert first.accuracy > 0.95 and first.chance == pytest.approx(1 / 8, abs=0.02) and first.p_value < 1e-100
    sub = probe(x, y, folds=5, seed=1, max_classes=4)
    assert sub.chance == pytest.approx(1 / 4, abs=0.03) and sub.accuracy > 0.95
    noise = probe(rng.uniform(size=(400, 20)).astype(np.float32), y, folds=5)
    assert abs(noise.accuracy - noise.chance) < 0.08 and noise.p_value > 0.001
    assert all(math.isnan(v) for v in probe(x, np.zeros(400, dtype=np.int64)))
    assert all(math.isnan(v) for v in probe(x[:3], y[:3], folds=5))


def test_stratified_folds_deal_each_class_evenly() -> None:
    y = np.repeat(np.arange(3), [10, 7, 5])
    fold = stratified_folds(y, 5, seed=0)
    for k in range(3):
        sizes = np.bincount(fold[y == k], minlength=5)
        assert sizes.max() - sizes.min() <= 1


def test_probe_chance_is_the_majority_rate_even_when_folds_split_classes():
    # 4 vectors per class, 5 folds: each test fold holds 4 classes once, so a per-fold majority
    # guess (made from the training part) would always miss; chance must stay 1/K.
    labels = np.repeat(np.arange(5), 4)
    values = np.random.default_rng(0).random((20, 3))
    assert probe(values, labels).chance == pytest.approx(0.2)
    assert probe(values[:-1], labels[:-1]).chance == pytest.approx(4 / 19)
