"""Screen-resolution reductions of the figures against brute force."""

from __future__ import annotations

import numpy as np

from analysis.presentation import figures


def test_envelope_keeps_every_runs_extremes():
    values = np.random.default_rng(0).random(2048)
    x, low, high = figures.envelope(values, 500)
    width = 5  # ceil(2048 / 500)
    assert len(x) == len(low) == len(high) == 410
    for i, start in enumerate(range(0, 2048, width)):
        run = values[start:start + width]
        assert low[i] == run.min() and high[i] == run.max() and start <= x[i] <= start + len(run) - 1
    assert low.min() == values.min() and high.max() == values.max()


def test_heatmap_groups_neighbouring_channels_by_their_mean():
    g = np.random.default_rng(1)
    mean, order = g.random((5, 10)), g.permutation(10)
    fig = figures.class_channel_heatmap(mean, order, [str(k) for k in range(5)], "SE_2_1", max_columns=4)
    shown = fig.axes[0].images[0].get_array()
    centred = (mean - mean.mean(0))[:, order]
    expected = np.stack([centred[:, 0:3].mean(1), centred[:, 3:6].mean(1), centred[:, 6:9].mean(1), centred[:, 9]], 1)
    np.testing.assert_allclose(shown, expected)
    assert fig.axes[0].images[0].get_extent() == [-0.5, 9.5, 4.5, -0.5]  # x still counts channels
    figures.close(fig)
