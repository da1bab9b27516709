"""Agreement of a channel's class preference with the class that loses, against scipy and a planted case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from analysis.measures.channel_use import (matched_share, null_p, preference_agreement, row_spearman,
                                           selectivity_agreement, shuffled_null)


def test_row_spearman_is_scipys_with_ties():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 10)), rng.integers(0, 3, size=(6, 10)).astype(float)  # b full of ties
    expected = [sps.spearmanr(x, y).statistic for x, y in zip(a, b)]
    assert np.allclose(row_spearman(a, b), expected)
    assert math.isnan(row_spearman(a[:1], np.zeros((1, 10)))[0])


def test_planted_preferences_predict_the_losses_and_the_null_does_not():
    rng = np.random.default_rng(1)
    m, k = 40, 10
    preference = rng.normal(size=(m, k))
    fragile = np.linspace(0, 1, k)  # every intervention hurts the last classes a little: not the channels' doing
    loss = 0.5 * preference + fragile + 0.3 * rng.normal(size=(m, k))
    rho = preference_agreement(preference, loss)
    null = shuffled_null(preference_agreement, preference, loss, shuffles=199, seed=0)
    assert rho > 0.6
    assert np.quantile(null, 0.95) < rho and null_p(rho, null) == pytest.approx(1 / 200)
    share = matched_share(preference, loss)
    assert share > np.quantile(shuffled_null(matched_share, preference, loss, shuffles=199, seed=0), 0.95) + 0.1
    # unrelated losses: the observed value sits inside its null
    unrelated = fragile + rng.normal(size=(m, k))
    rho0 = preference_agreement(preference, unrelated)
    assert 0.05 < null_p(rho0, shuffled_null(preference_agreement, preference, unrelated, shuffles=199, seed=0))


def test_selectivity_agreement_and_undefined_cases():
    selectivity = np.array([0.1, 0.5, 0.9, 0.3])
    loss = np.zeros((4, 3))
    loss[:, 0] = selectivity * 2  # the more selective, the more the loss falls on one class
    assert selectivity_agreement(selectivity, loss) == pytest.approx(1.0)
    assert math.isnan(selectivity_agreement(selectivity[:2], loss[:2]))
    assert math.isnan(preference_agreement(np.ones((3, 4)), np.zeros((3, 4))))  # no class changed: nothing said
    assert math.isnan(matched_share(np.ones((3, 4)), np.zeros((3, 4))))
    assert math.isnan(null_p(math.nan, np.array([0.1])))
