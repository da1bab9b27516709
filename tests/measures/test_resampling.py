"""The jackknife interval against its definition and its coverage on Gaussian data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analysis.measures.anova import anova, eta_squared
from analysis.measures.resampling import eta2_jackknife

T7 = 2.364624251592784  # 97.5% quantile of Student's t with 7 degrees of freedom (8 shards), from tables


def gaussian_moments(n: int, shards: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Moments of 4 channels of N(mu_class, 1) with 4 equiprobable classes; population eta2."""
    rng = np.random.default_rng(seed)
    mu = np.array([0.0, 0.3, 0.6, 0.9])
    y = rng.integers(0, 4, size=n)
    v = mu[y][:, None] + rng.normal(size=(n, 4))
    group = (np.arange(n) % shards) * 4 + y
    count = np.bincount(group, minlength=shards * 4).reshape(shards, 4)
    total, total_sq = np.zeros((shards * 4, 4)), np.zeros((shards * 4, 4))
    np.add.at(total, group, v)
    np.add.at(total_sq, group, v * v)
    return count, total.reshape(shards, 4, 4), total_sq.reshape(shards, 4, 4), mu.var() / (mu.var() + 1)


def test_jackknife_t_interval_reaches_nominal_coverage_by_simulation() -> None:
    # 400 simulations with known truth; binomial sd of the coverage sqrt(.95 .05 / 400) = 0.011, so
    # a correct 95% interval lands in 0.95 +- 2.58 sd = [0.922, 0.978] with probability 99%.
    # N = 4000 keeps eta2's own bias ((K-1)/N ~ 7e-4) far below its SE (~0.01).
    hits = 0
    for seed in range(400):
        count, total, total_sq, truth = gaussian_moments(4000, 8, seed)
        low, high = eta2_jackknife(count, total, total_sq)
        hits += low <= truth <= high
    assert 0.922 <= hits / 400 <= 0.978
    se = {}
    for n in (400, 6400):
        estimates, halves = [], []
        for seed in range(100):
            count, total, total_sq, _ = gaussian_moments(n, 8, 1000 + seed)
            estimates.append(eta_squared(anova(count.sum(0), total.sum(0), total_sq.sum(0))).mean())
            low, high = eta2_jackknife(*map(torch.from_numpy, (count, total, total_sq)))
            halves.append((high - low) / 2 / T7)
        se[n] = np.mean(halves)
        assert se[n] == pytest.approx(np.std(estimates), rel=0.2)  # the SE is the estimate's spread
    assert se[400] > 3 * se[6400]  # ~ sqrt(16) = 4


def test_jackknife_is_centred_on_the_all_data_estimate_and_nan_without_shards() -> None:
    count, total, total_sq, _ = gaussian_moments(800, 8, 7)
    low, high = eta2_jackknife(count, total, total_sq)
    a = anova(count.sum(0), total.sum(0), total_sq.sum(0))
    assert (low + high) / 2 == pytest.approx(eta_squared(a).mean(), rel=1e-12)
    thetas = []
    for s in range(8):  # recompute each leave-one-shard-out estimate from scratch
        kept = [np.delete(a, s, axis=0).sum(0) for a in (count, total, total_sq)]
        thetas.append(eta_squared(anova(*kept)).mean())
    se = math.sqrt(7 / 8 * ((np.array(thetas) - np.mean(thetas)) ** 2).sum())
    assert (high - low) / 2 == pytest.approx(T7 * se, rel=1e-6)
    assert all(math.isnan(x) for x in eta2_jackknife(count[:1], total[:1], total_sq[:1]))
