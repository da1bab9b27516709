"""The constant rule from the data's own precision, eps2 and class_mod against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.measures.tables import channel_table
from analysis.testing.fakes import FakeStats, balanced_labels


def test_narrow_channels_keep_their_effect_and_float32_rounding_is_constant() -> None:
    rng = np.random.default_rng(2)
    y = balanced_labels(3000, 3, rng)
    narrow = np.float32(0.54) + (4.7e-6 * rng.normal(size=3000) + 2e-6 * y).astype(np.float32)
    ulps = np.float32(0.54) + np.spacing(np.float32(0.54)) * rng.integers(-1, 2, size=3000)  # +-1 spacing
    v = np.c_[narrow, ulps.astype(np.float32)]
    ch = channel_table(FakeStats({"SE_1": v}, y, 3))
    w = v[:, 0].astype(np.float64)
    ss_t = ((w - w.mean()) ** 2).sum()
    ss_b = sum((y == k).sum() * (w[y == k].mean() - w.mean()) ** 2 for k in range(3))
    ss_w = ss_t - ss_b
    assert ch.loc[0, "eta2"] == pytest.approx(ss_b / ss_t, rel=1e-6)  # shifted moments keep the digits
    assert ch.loc[0, "eps2"] == pytest.approx((ss_b - 2 * ss_w / 2997) / ss_t, rel=1e-6)
    assert ch.loc[0, "class_mod"] == pytest.approx(np.sqrt(ss_b / 3000), rel=1e-6)
    assert ch.loc[1, "eta2"] == 0.0 and ch.loc[1, "eps2"] == 0.0 and ch.loc[1, "std"] == 0.0
