"""Selectivity and profile similarity against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.measures.profiles import mean_pairwise_cosine
from analysis.measures.tables import channel_table
from analysis.testing import fakes


def test_selectivity_and_preferred_class_match_a_direct_computation() -> None:
    mixed = fakes.mixed()
    ch = channel_table(mixed).set_index(["block", "channel"])
    y = mixed.labels
    for name, v in mixed.values.items():
        means = np.stack([v[y == k].astype(np.float64).mean(0) for k in range(4)])  # [K', C]
        for c in range(v.shape[1]):
            order = np.sort(means[:, c])
            mu_max, mu_rest = order[-1], order[:-1].mean()
            row = ch.loc[(name, c)]
            assert row["selectivity"] == pytest.approx((mu_max - mu_rest) / (mu_max + mu_rest), rel=1e-9)
            assert row["preferred_class"] == np.argmax(means[:, c])
            assert row["preferred_class_name"] == f"class {np.argmax(means[:, c])}"


def test_mean_pairwise_cosine_and_correlation_match_all_pairs() -> None:
    rng = np.random.default_rng(8)
    rows = rng.uniform(size=(6, 9))
    pairs = [(i, j) for i in range(6) for j in range(6) if i != j]
    cos = np.mean([rows[i] @ rows[j] / np.linalg.norm(rows[i]) / np.linalg.norm(rows[j]) for i, j in pairs])
    corr = np.mean([np.corrcoef(rows[i], rows[j])[0, 1] for i, j in pairs])
    assert mean_pairwise_cosine(rows) == pytest.approx(cos, rel=1e-12)
    assert mean_pairwise_cosine(rows, centre=True) == pytest.approx(corr, rel=1e-12)
    flat = np.vstack([rows[:2], np.full((2, 9), 0.3)])  # two constant profiles: identical, 0 to others
    pair_corr = np.corrcoef(rows[0], rows[1])[0, 1]
    assert mean_pairwise_cosine(flat, centre=True) == pytest.approx((2 * pair_corr + 2) / 12)
    assert mean_pairwise_cosine(rows[:1]) == 1.0
