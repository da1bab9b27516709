"""Benjamini-Hochberg against scipy and against its definition by brute force."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from analysis.measures.tables import channel_table
from analysis.measures.testing import benjamini_hochberg
from analysis.testing import fakes


def test_significance_is_benjamini_hochberg_within_each_block() -> None:
    mixed = fakes.mixed()
    for q in (0.01, 0.05, 0.2):
        ch = channel_table(mixed, q=q)
        for _, block in ch.groupby("block"):
            expected = sps.false_discovery_control(block["p_value"].to_numpy()) <= q
            assert block["significant"].tolist() == expected.tolist()


def test_benjamini_hochberg_matches_scipy_and_never_rejects_undefined_tests() -> None:
    rng = np.random.default_rng(2)
    p = np.concatenate([rng.uniform(size=300), rng.uniform(0, 1e-3, size=40)])
    for q in (0.01, 0.05, 0.1):
        assert (benjamini_hochberg(p, q) == (sps.false_discovery_control(p) <= q)).all()
    with_nan = np.array([1e-6, np.nan, 0.5, 2e-6])
    assert benjamini_hochberg(with_nan, 0.05).tolist() == [True, False, False, True]


def brute_force_bh(p: np.ndarray, q: float) -> np.ndarray:
    """The step-up rule by its definition: reject the k smallest p-values for the largest k with
    p_(k) <= k q / m, every k tried in turn (NaN as 1)."""
    p = np.where(np.isnan(p), 1.0, p)
    m = p.size
    ranked = sorted(range(m), key=lambda i: p[i])
    k_max = max((k for k in range(1, m + 1) if p[ranked[k - 1]] <= k * q / m), default=0)
    reject = np.zeros(m, dtype=bool)
    reject[ranked[:k_max]] = True
    return reject


def test_benjamini_hochberg_equals_its_definition_tried_by_brute_force() -> None:
    rng = np.random.default_rng(13)
    for trial in range(200):
        m = int(rng.integers(1, 40))
        p = np.where(rng.uniform(size=m) < 0.3, rng.uniform(0, 0.01, size=m), rng.uniform(size=m))
        p[rng.uniform(size=m) < 0.1] = np.nan
        for q in (0.01, 0.05, 0.25):
            assert benjamini_hochberg(p, q).tolist() == brute_force_bh(p, q).tolist(), (trial, q)
    # step-up, not step-down: a p-value above its own threshold is rejected when a larger rank passes
    p = np.array([0.02, 0.03, 0.04, 0.045])  # 0.02 > 0.05 / 4, but 0.045 <= 0.05
    assert benjamini_hochberg(p, 0.05).all() and brute_force_bh(p, 0.05).all()
    assert benjamini_hochberg(np.array([]), 0.05).size == 0
