"""Measures that the data cannot estimate are NaN (or an exact interval), never a number that looks
like a result: eta2 with no two samples of one class, a probe class of one vector, an accuracy
change where no image changed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis.testing.fakes import balanced_labels, planted, sklearn_fold_correct
from scipy import stats as sps

from analysis.experiments.interventions import unchanged_bound
from analysis.measures.anova import anova, epsilon_squared, eta2_null, eta_squared, f_test
from analysis.measures.probe import ncm_probe, probe, stratified_folds


def moments(x: np.ndarray, y: np.ndarray, k: int):
    count = np.bincount(y, minlength=k)
    total = np.stack([x[y == c].sum(0) for c in range(k)])
    total_sq = np.stack([(x[y == c] ** 2).sum(0) for c in range(k)])
    return count, total, total_sq


def test_eta2_without_two_samples_of_any_class_is_nan_and_a_constant_channel_zero():
    x = np.array([[0.1, 0.5], [0.7, 0.5], [0.3, 0.5], [0.9, 0.5]])  # channel 1 constant
    a = anova(*moments(x, np.arange(4), 4))
    assert np.isnan(eta_squared(a)[0]) and eta_squared(a)[1] == 0.0  # 1 by arithmetic: says nothing
    assert np.isnan(epsilon_squared(a)[0]) and np.isnan(f_test(a)[0][0]) and math.isnan(eta2_null(4, 4))
    y = np.array([0, 0, 1, 2])  # one class of two: one within-class degree of freedom, eta2 defined
    a = anova(*moments(x, y, 4))
    ss_within = ((x[:2, 0] - x[:2, 0].mean()) ** 2).sum()
    ss_total = ((x[:, 0] - x[:, 0].mean()) ** 2).sum()
    assert eta_squared(a)[0] == pytest.approx(1 - ss_within / ss_total, rel=1e-12)
    assert eta2_null(3, 4) == pytest.approx(2 / 3)


def test_a_class_of_one_vector_is_left_out_of_the_probe():
    rng = np.random.default_rng(3)
    y = balanced_labels(300, 6, rng)
    x = planted(y, 6, 10, 1.0, rng).astype(np.float32)
    lone = np.flatnonzero(y == 5)[1:]  # class 5 keeps one vector
    keep = np.setdiff1d(np.arange(y.size), lone)
    with_lone, without = probe(x[keep], y[keep], seed=2), probe(x[keep][y[keep] != 5], y[keep][y[keep] != 5], seed=2)
    assert with_lone == without and ncm_probe(x[keep], y[keep], seed=2) == ncm_probe(
        x[keep][y[keep] != 5], y[keep][y[keep] != 5], seed=2)
    rest = y[keep] != 5  # against scikit-learn on the classes left in
    correct = sklearn_fold_correct(x[keep][rest], y[keep][rest], stratified_folds(y[keep][rest], 5, 2))
    assert with_lone.accuracy == pytest.approx(correct / rest.sum(), abs=3 / rest.sum())
    one_each = probe(x[:6][np.argsort(y[:6])], np.arange(6))  # every class one vector: nothing to train on
    assert all(math.isnan(v) for v in one_each)


@pytest.mark.parametrize("n", [1, 4, 20, 1000, 50_000])
def test_the_interval_of_no_change_is_the_exact_one_of_zero_events(n):
    # tolerance stated before: the closed form and scipy's Clopper-Pearson agree to float rounding
    assert unchanged_bound(n) == pytest.approx(sps.binomtest(0, n).proportion_ci(0.95, "exact").high, rel=1e-9)
