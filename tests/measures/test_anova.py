"""ANOVA per channel against scipy's one-way ANOVA on the raw samples, and its null."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from analysis.measures.anova import anova, eta2_null, eta_squared, f_test, null_band
from analysis.measures.tables import channel_table
from analysis.testing import fakes
from analysis.testing.fakes import FakeStats


def raw_eta2(v: np.ndarray, y: np.ndarray) -> float:
    grand = v.mean()
    ss_t = ((v - grand) ** 2).sum()
    ss_b = sum((y == k).sum() * (v[y == k].mean() - grand) ** 2 for k in np.unique(y))
    return ss_b / ss_t


def test_eta2_f_and_p_match_scipy_one_way_anova_on_raw_samples() -> None:
    mixed = fakes.mixed()
    ch = channel_table(mixed).set_index(["block", "channel"])
    y = mixed.labels
    for name, v in mixed.values.items():
        v = v.astype(np.float64)
        for c in range(v.shape[1]):
            groups = [v[y == k, c] for k in range(4)]  # the empty class 4 is ignored
            f, p = sps.f_oneway(*groups)
            row = ch.loc[(name, c)]
            assert row["eta2"] == pytest.approx(raw_eta2(v[:, c], y), rel=1e-9)
            assert row["F"] == pytest.approx(f, rel=1e-9)
            assert row["p_value"] == pytest.approx(p, rel=1e-6, abs=1e-300)
            assert row["mean"] == pytest.approx(v[:, c].mean(), rel=1e-12)
            assert row["std"] == pytest.approx(v[:, c].std(), rel=1e-9)


def test_f_is_infinite_when_every_class_is_constant_but_classes_differ() -> None:
    y = np.repeat([0, 1, 2], 333)
    v = np.array([0.123456789, 0.654321, 0.987654321])[y][:, None]  # sumsq - sum^2 / n: rounding noise
    ch = channel_table(FakeStats({"SE_1": v}, y, 3))
    assert ch.loc[0, "eta2"] == 1.0
    assert ch.loc[0, "F"] == math.inf and ch.loc[0, "p_value"] == 0.0
    assert ch.loc[0, "significant"]


def test_functional_core_gives_exact_zeros_for_a_constant_gate() -> None:
    count = torch.tensor([[10, 20, 5], [12, 18, 7]])
    total = count[:, :, None].double() * torch.full((1, 1, 4), 0.7, dtype=torch.float64)
    a = anova(count.sum(0), total.sum(0), (total * 0.7).sum(0))
    assert a.constant.all() and (eta_squared(a) == 0).all()
    f, p = f_test(a)
    assert (f == 0).all() and (p == 1).all()


def test_null_band_is_the_beta_quantile_of_one_channels_eta2_without_class_effect() -> None:
    blocks = pd.DataFrame({"classes": [6, 10], "samples": [240, 2000]}, index=[3, 7])
    band = null_band(blocks)
    assert band.index.tolist() == [3, 7]
    assert band.loc[3] == pytest.approx(sps.beta.ppf(0.95, 5 / 2, 234 / 2))
    assert (band > [eta2_null(6, 240), eta2_null(10, 2000)]).all()
    rng = np.random.default_rng(12)  # no class effect: 95% of channels' eta2 fall below the band
    y = np.arange(240) % 6
    eta2 = [raw_eta2(rng.normal(size=240), y) for _ in range(2000)]
    assert np.mean(np.array(eta2) <= band.loc[3]) == pytest.approx(0.95, abs=0.015)
    assert np.mean(eta2) == pytest.approx(eta2_null(6, 240), rel=0.05)
    assert eta2_null(1, 240) == 0.0
