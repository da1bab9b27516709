"""Shape versus level on a planted model: class-free, shift-only and shape blocks, and both onsets."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from analysis.measures.profiles import profile_separation
from analysis.measures.tables import run_tables
from analysis.testing.fakes import FakeStats, balanced_labels


@cache
def shift_and_shape() -> FakeStats:
    """Gates in gate units around a common curve m (spread 0.1): SE_1 class-free, SE_2 and SE_3
    shift-only (class k moves every gate of the block by a_k and scales m - mean(m) by 1 + b_k: high
    eta2, the same curve), SE_4 and SE_5 shape (each class opens its own channels)."""
    rng = np.random.default_rng(14)
    k, c, n = 6, 32, 1800
    y = balanced_labels(n, k, rng)
    blocks = {}
    for i, kind in enumerate(["free", "shift", "shift", "shape", "shape"], start=1):
        m = 0.5 + 0.1 * rng.normal(size=c)
        mk = np.tile(m, (k, 1))
        if kind == "shift":
            mk = m + rng.normal(scale=0.05, size=(k, 1)) + rng.normal(scale=0.3, size=(k, 1)) * (m - m.mean())
        elif kind == "shape":
            mk = m + rng.normal(scale=0.05, size=(k, c))
        blocks[f"SE_{i}"] = mk[y] + 0.02 * rng.normal(size=(n, c))
    return FakeStats(blocks, y, k)


def test_shape_sep_removes_shift_and_scale_exactly_and_profile_sep_does_not() -> None:
    rng = np.random.default_rng(0)
    m = rng.normal(size=20)
    mk = m + np.array([[0.3], [-0.1], [0.5]]) + np.array([[0.2], [-0.4], [0.0]]) * (m - m.mean())
    profile, shape = profile_separation(mk)
    assert shape == pytest.approx(0.0, abs=1e-12) and profile > 0.1
    mk = mk + rng.normal(size=(3, 20))  # now with shape: the definitions by brute force
    profile, shape = profile_separation(mk)
    common = mk.mean(0)
    x = np.c_[np.ones(20), common - common.mean()]
    dm = mk - common
    res = dm - (x @ np.linalg.lstsq(x, dm.T, rcond=None)[0]).T
    spread = common.std()
    assert profile == pytest.approx(np.sqrt((dm**2).mean()) / spread, rel=1e-12)
    assert shape == pytest.approx(np.sqrt((res**2).mean()) / spread, rel=1e-12)


def test_onset_is_the_first_shape_block_not_the_first_shift_block() -> None:
    tables, onset = run_tables(shift_and_shape())
    b = tables["blocks"].set_index("block")
    assert b.loc["SE_2", "eta2_mean"] > 0.5 and b.loc["SE_3", "eta2_mean"] > 0.5  # shift: high eta2
    for name in ("SE_1", "SE_2", "SE_3"):  # no shape: at the permutation null (the same noise)
        assert b.loc[name, "shape_sep"] < 2 * b.loc[name, "shape_sep_perm_max"]
    for name in ("SE_4", "SE_5"):
        assert b.loc[name, "shape_sep"] > 10 * b.loc[name, "shape_sep_perm_max"]
        assert b.loc[name, "shape_sep_ci_low"] < b.loc[name, "shape_sep"] < b.loc[name, "shape_sep_ci_high"]
    assert b.loc["SE_2", "profile_sep"] > 10 * b.loc["SE_2", "shape_sep"]  # level differs, shape does not
    assert onset["block"] == "SE_4"
    assert onset["detectable"] == "SE_2"  # today's rule names the first shift-only block
    assert "shape_sep" in onset["rule"] and "eta2" in onset["rule_detectable"]


def test_onset_needs_every_later_block_and_the_untrained_control() -> None:
    stats = shift_and_shape()
    _, onset = run_tables(stats, untrained=FakeStats({"SE_4": stats.values["SE_4"]}, stats.labels, 6))
    # the "untrained" SE_4 is as shaped as the trained one: SE_4 no longer passes, SE_5 does
    assert onset["block"] == "SE_5"
