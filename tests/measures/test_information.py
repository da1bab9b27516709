"""Mutual information against plug-in entropies of the raw joint histogram."""

from __future__ import annotations

import math

import fakes
import numpy as np
import pytest
import torch

from analysis.measures.information import mutual_information_bits
from analysis.measures.tables import channel_table


def test_mutual_information_matches_plug_in_entropies_with_miller_madow() -> None:
    mixed = fakes.mixed()
    ch = channel_table(mixed).set_index(["block", "channel"])
    y, b = mixed.labels, mixed.bins

    def entropy_mm(counts: np.ndarray) -> float:
        counts = counts[counts > 0].astype(np.float64)
        p = counts / counts.sum()
        return float(-(p * np.log(p)).sum() + (counts.size - 1) / (2 * counts.sum()))

    for name, v in mixed.values.items():
        for c in range(v.shape[1]):
            joint, _, _ = np.histogram2d(y, v[:, c], bins=[np.arange(6) - 0.5, np.linspace(0, 1, b + 1)])
            mi = entropy_mm(joint.sum(0)) + entropy_mm(joint.sum(1)) - entropy_mm(joint.ravel())
            assert ch.loc[(name, c), "mi_bits"] == pytest.approx(mi / math.log(2), rel=1e-9, abs=1e-12)
    assert ch.loc["SE_2", "mi_bits"].min() > 0.2  # strong class effect: clearly informative


def test_mutual_information_is_exactly_zero_when_every_value_shares_one_bin() -> None:
    hist = torch.zeros(3, 4, 20, dtype=torch.int64)
    hist[:, :, 14] = torch.tensor([22, 38, 12])[:, None]
    assert (mutual_information_bits(hist) == 0).all()
    hist[0, 0, 3] = 5  # one value elsewhere: information
    assert mutual_information_bits(hist)[0] > 0 and (mutual_information_bits(hist)[1:] == 0).all()
