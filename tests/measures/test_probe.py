"""The linear probe on planted and on random gate vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analysis.measures.probe import control_labels, fit_logistic, ncm_probe, probe, stratified_folds
from analysis.measures.tables import block_table
from analysis.testing.fakes import FakeStats, balanced_labels, planted, sklearn_fold_correct


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


def test_logistic_probe_matches_scikit_learn_on_the_same_folds() -> None:
    rng = np.random.default_rng(14)
    y = balanced_labels(600, 6, rng)
    # correlated channels within a class: the case where logistic regression beats class means
    x = (planted(y, 6, 12, 0.4, rng) + 0.3 * rng.normal(size=(600, 1))).astype(np.float32)
    ours = probe(x, y, folds=5, seed=3)
    correct = sklearn_fold_correct(x, y, stratified_folds(y, 5, 3))
    # tolerance: up to 3 of 600 test predictions may flip on near-ties of two optima agreeing to ~1e-4
    assert ours.accuracy == pytest.approx(correct / 600, abs=3 / 600)
    assert ours.per_class == 100.0 and ours.accuracy > ncm_probe(x, y, folds=5, seed=3).accuracy - 0.02


def test_fit_logistic_coefficients_and_probabilities_match_scikit_learn() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=150)
    z = rng.normal(size=(150, 4)) + 0.8 * np.eye(3, 4)[y]
    w, b = fit_logistic(torch.from_numpy(z), torch.from_numpy(y), 3, c=0.5, tol=1e-10)
    ref = LogisticRegression(C=0.5, tol=1e-10, max_iter=10000).fit(z, y)
    # both are the unique optimum of the same strictly convex objective, each to its gradient tolerance
    np.testing.assert_allclose(w.numpy().T, ref.coef_, atol=1e-6)
    np.testing.assert_allclose(b.numpy(), ref.intercept_, atol=1e-6)
    proba = torch.softmax(torch.from_numpy(z) @ w + b, 1).numpy()
    np.testing.assert_allclose(proba, ref.predict_proba(z), atol=1e-6)
    # from another start (a neighbouring fold's fit, in the probe) the same optimum
    far = (torch.from_numpy(rng.normal(size=(4, 3))), torch.from_numpy(rng.normal(size=3)))
    w2, b2 = fit_logistic(torch.from_numpy(z), torch.from_numpy(y), 3, c=0.5, tol=1e-10, start=far)
    np.testing.assert_allclose(w2.numpy().T, ref.coef_, atol=1e-6)
    np.testing.assert_allclose(b2.numpy(), ref.intercept_, atol=1e-6)


def test_control_labels_keep_every_class_count_and_depend_on_the_samples_alone() -> None:
    rng = np.random.default_rng(2)
    y, ids = rng.choice(4, size=300, p=[0.4, 0.3, 0.2, 0.1]), rng.permutation(10_000)[:300]
    fake = control_labels(y, ids, seed=0)
    np.testing.assert_array_equal(np.bincount(fake, minlength=4), np.bincount(y, minlength=4))
    assert (fake == y).mean() < 0.45  # dealt out again: agreement near sum p_k^2 = 0.30, not 1
    order = rng.permutation(300)  # the same samples listed in another order get the same labels
    np.testing.assert_array_equal(control_labels(y[order], ids[order], seed=0), fake[order])
    assert not np.array_equal(control_labels(y, ids, seed=1), fake)


def test_the_probe_controls_chance_is_its_labels_majority_share() -> None:
    """Unbalanced classes (0.4, 0.3, 0.2, 0.1 of the samples, a fifth class absent), every sample in
    the reservoir: probe_perm_chance is the most frequent class's share among the reservoir's labels,
    counted here; a pseudo-label drawn per sample (the control before) would give another share."""
    rng = np.random.default_rng(1)
    y = rng.choice(4, size=500, p=[0.4, 0.3, 0.2, 0.1])
    stats = FakeStats({"SE_1": planted(y, 5, 6, 0.3, rng)}, y, num_classes=5, reservoir=500)
    row = block_table(stats).iloc[0]
    labels = stats.reservoir("SE_1")[1].numpy()
    share = np.bincount(labels).max() / labels.size
    assert 0.35 < share < 0.45 and row["probe_perm_chance"] == pytest.approx(share)
    assert row["probe_chance"] == pytest.approx(share)
