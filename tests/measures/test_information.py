"""Mutual information against plug-in entropies of the raw joint histogram, and against a kNN
estimate (scikit-learn's mutual_info_classif) on narrow and on saturated gates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from analysis.measures.information import mutual_information_bits
from analysis.measures.tables import channel_table
from analysis.testing import fakes


def test_mutual_information_matches_plug_in_entropies_with_miller_madow() -> None:
    mixed = fakes.mixed()
    ch = channel_table(mixed).set_index(["block", "channel"])
    y = mixed.labels

    def entropy_mm(counts: np.ndarray) -> float:
        counts = counts[counts > 0].astype(np.float64)
        p = counts / counts.sum()
        return float(-(p * np.log(p)).sum() + (counts.size - 1) / (2 * counts.sum()))

    for name, v in mixed.values.items():
        for c in range(v.shape[1]):
            edges = np.r_[-np.inf, mixed.edges(name)[c], np.inf]  # the channel's own bins + under/overflow
            joint, _, _ = np.histogram2d(y, v[:, c], bins=[np.arange(6) - 0.5, edges])
            mi = entropy_mm(joint.sum(0)) + entropy_mm(joint.sum(1)) - entropy_mm(joint.ravel())
            assert ch.loc[(name, c), "mi_bits"] == pytest.approx(mi / math.log(2), rel=1e-9, abs=1e-12)
    assert ch.loc["SE_2", "mi_bits"].min() > 0.2  # strong class effect: clearly informative


def test_mutual_information_is_exactly_zero_when_every_value_shares_one_bin() -> None:
    hist = torch.zeros(3, 4, 20, dtype=torch.int64)
    hist[:, :, 14] = torch.tensor([22, 38, 12])[:, None]
    assert (mutual_information_bits(hist) == 0).all()
    hist[0, 0, 3] = 5  # one value elsewhere: information
    assert mutual_information_bits(hist)[0] > 0 and (mutual_information_bits(hist)[1:] == 0).all()


@pytest.mark.parametrize("centre, spread", [(0.5, 1e-3), (0.995, 1e-3)])  # narrow; saturated near 1
def test_mutual_information_of_narrow_and_saturated_gates_agrees_with_knn(centre: float, spread: float) -> None:
    from sklearn.feature_selection import mutual_info_classif

    rng = np.random.default_rng(8)
    y = rng.permutation(np.arange(4000) % 4)
    effect = np.array([[0.0], [0.5], [1.0], [2.0]]) * np.linspace(0, 1, 6)  # channel 0: no class effect
    v = (centre + spread * (effect.T[:, y].T + rng.normal(size=(4000, 6)))).astype(np.float32)
    stats = fakes.FakeStats({"SE_1": v}, y, 4, bins=20)
    ch = channel_table(stats)
    knn = mutual_info_classif(v.astype(np.float64), y, n_neighbors=3, random_state=0) / math.log(2)
    # tolerance: 20 bins over the channel's range lose a few % of a smooth density's MI, and the
    # kNN estimate's spread at N = 4000 is ~0.01 bits
    np.testing.assert_allclose(ch["mi_bits"], knn, atol=0.03, rtol=0.1)
    clearly = ch["eta2"] > sps.beta.ppf(0.999, 3 / 2, 3996 / 2)  # above the null's 99.9% quantile
    assert clearly.sum() == 5 and (ch["mi_bits"][clearly] > 0).all()
