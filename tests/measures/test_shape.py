"""Shape versus level: shape_sep and the affine share against a least-squares fit of raw values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.measures.anova import anova
from analysis.measures.profiles import gate_sd, profile_separation, profile_split
from analysis.measures.tables import block_table
from analysis.testing.fakes import FakeStats, balanced_labels


def exact_layout(means: np.ndarray, n: int = 50):
    """The layout of classes whose every image has its class mean (no within-class variation)."""
    count = np.full(means.shape[0], float(n))
    return anova(count, n * means, n * means**2)


def least_squares(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(profile_sep, shape_sep, affine_r2) from the definitions, by a least-squares solver on every
    value: class means m_k, their mean m, the deviations and their residual after the fit on
    [1, m - mean m], over the population SD of all the values."""
    mk = np.stack([x[y == k].mean(0) for k in np.unique(y)])
    m = mk.mean(0)
    d = (mk - m).T
    design = np.stack([np.ones_like(m), m - m.mean()], axis=1)
    r = d - design @ np.linalg.lstsq(design, d, rcond=None)[0]
    return math.sqrt((d**2).mean()) / x.std(), math.sqrt((r**2).mean()) / x.std(), 1 - (r**2).sum() / (d**2).sum()


def test_a_shift_and_scale_of_the_common_curve_leaves_no_shape_and_every_r2_is_one() -> None:
    rng = np.random.default_rng(0)
    m = rng.normal(size=20)
    affine = m + np.array([[0.3], [-0.1], [0.5]]) + np.array([[0.2], [-0.4], [0.0]]) * (m - m.mean())
    a = exact_layout(affine - affine.mean(0) + m)
    profile, shape = profile_separation(a)
    assert shape == pytest.approx(0.0, abs=1e-12) and profile > 0.1
    assert profile_split(a).affine_r2 == pytest.approx(1.0, abs=1e-12)
    flat = exact_layout(np.full((3, 20), 0.5) + np.array([[0.1], [0.0], [-0.1]]))  # a flat m: shift only
    assert profile_separation(flat)[1] == pytest.approx(0.0, abs=1e-12)
    same = exact_layout(np.tile(m, (4, 1)), n=1)  # identical class curves (4: their mean is exact)
    assert profile_separation(same) == (0.0, 0.0) and profile_split(same).affine_r2 == 1.0


def test_shape_sep_and_the_affine_share_match_a_least_squares_fit_of_raw_values() -> None:
    """Tolerance, stated before the run: 1e-9 relative (both exact in float64)."""
    rng = np.random.default_rng(3)
    y = balanced_labels(600, 4, rng)
    m = 0.5 + 0.1 * rng.normal(size=12)
    x = m + 0.05 * rng.normal(size=(4, 12))[y] + 0.02 * rng.normal(size=(600, 12))
    stats = FakeStats({"SE_1": x}, y, 4)
    blocks = block_table(stats).set_index("block")
    profile, shape, r2 = least_squares(x.astype(np.float32).astype(np.float64), y)
    assert blocks.at["SE_1", "profile_sep"] == pytest.approx(profile, rel=1e-9)
    assert blocks.at["SE_1", "shape_sep"] == pytest.approx(shape, rel=1e-9)
    assert blocks.at["SE_1", "affine_r2"] == pytest.approx(r2, rel=1e-9)
    assert blocks.at["SE_1", "gate_std"] == pytest.approx(x.astype(np.float32).std(dtype=np.float64), rel=1e-9)


def test_gate_sd_does_not_depend_on_the_labels() -> None:
    """The yardstick is the same under any relabelling, so the permutation null differs from the
    observed value in its residual only."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(300, 7)), rng.integers(0, 3, 300)

    def layout(labels: np.ndarray):
        count = np.bincount(labels, minlength=3).astype(float)
        total, total_sq = np.zeros((3, 7)), np.zeros((3, 7))
        np.add.at(total, labels, x)
        np.add.at(total_sq, labels, x * x)
        return anova(count, total, total_sq)

    assert gate_sd(layout(y)) == pytest.approx(x.std(), rel=1e-12)
    assert gate_sd(layout(rng.permutation(y))) == pytest.approx(x.std(), rel=1e-12)
