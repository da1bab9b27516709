"""The histogram edges GateStats draws from its calibration sample, against counts of that sample."""

from __future__ import annotations

import numpy as np
import torch

from analysis import GateStats, StatsConfig
from analysis.capture.gates import Gate
from analysis.capture.ranges import BOUNDED_TOP, MARGIN, shift_and_quantiles, histogram_edges

BINS = 18


def cells(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of values [n] in the cells of edges [B + 1] (0 underflow, B + 1 overflow), by numpy."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=edges.size + 1)


def test_a_gates_bins_are_equiprobable_on_its_calibration_sample_and_span_it_widened():
    """Skewed channels of one gate, fed to GateStats: the first batch (n = 100 distinct values per
    channel) falls into every one of the 18 bins, 100 / 18 = 5 or 6 in each, none outside; the outer
    edges are its min and max widened by MARGIN of the span (within [0, BOUNDED_TOP] for gates)."""
    g = torch.Generator().manual_seed(0)
    first = torch.rand(100, 5, generator=g, dtype=torch.float64) ** torch.tensor([2.0, 3.0, 8.0, 0.3, 0.1])
    stats = GateStats([Gate("SE_2_1", 1, "a", 5)], StatsConfig(2, bins=BINS))
    stats.begin_batch(torch.arange(100) % 2, torch.arange(100))
    stats.update("SE_2_1", first.float())
    stats.end_batch()
    stats.finish()  # fewer samples than StatsConfig.calibration: all of them calibrate
    hist, edges = stats.histogram("SE_2_1")
    assert edges.dtype == torch.float64 and edges.shape == (5, BINS + 1)
    x = first.float().double().numpy()
    for c in range(5):
        counts = cells(x[:, c], edges[c].numpy())
        assert counts[0] == counts[-1] == 0 and set(counts[1:-1]) == {5, 6}, (c, counts)
        np.testing.assert_array_equal(hist[:, c].sum(0).numpy(), counts)
        low, high = x[:, c].min(), x[:, c].max()
        span = high - low
        np.testing.assert_allclose(edges[c, [0, -1]], np.clip([low - MARGIN * span, high + MARGIN * span], 0, BOUNDED_TOP))
    widths = edges.diff().numpy()
    assert (widths.max(1) > 10 * widths.min(1)).all()  # skewed channels: bins of very unequal width


def test_ties_give_empty_zero_width_bins_and_saturated_gates_stay_inside_the_range():
    """A first batch where 60 of 100 values are exactly 1.0 (saturated sigmoids): the repeated
    quantiles are kept as zero-width bins, which stay empty; every 1.0, also of later batches,
    counts in the last bin, [1.0, BOUNDED_TOP), not the overflow."""
    x = torch.cat([torch.linspace(0.5, 0.9, 40, dtype=torch.float64), torch.ones(60, dtype=torch.float64)])[:, None]
    e = histogram_edges(shift_and_quantiles(x, BINS)[1], bounded=True)[0].numpy()
    assert (np.diff(e) >= 0).all() and (np.diff(e) == 0).sum() == 9 and e[-1] == BOUNDED_TOP
    counts = cells(np.r_[x[:, 0].numpy(), 1.0, 1.0], e)  # the first batch and two later saturated gates
    assert counts[-2] == 62 and counts[-1] == 0
    assert (counts[1:-1][np.diff(e) == 0] == 0).all()
    assert set(counts[1:8]) == {5, 6} and counts[1:-1].sum() == 102


def test_a_channel_constant_in_its_calibration_sample_gets_equal_bins_that_separate_later_values():
    quantiles = shift_and_quantiles(torch.full((50, 1), 0.7, dtype=torch.float64), BINS)[1]
    e = histogram_edges(quantiles, bounded=True)[0].numpy()
    widths = np.diff(e)
    np.testing.assert_allclose(widths, widths.mean(), rtol=1e-6)
    assert e[0] < 0.7 < e[-1] and widths[0] > 0
    later = np.float32(0.7) + np.spacing(np.float32(0.7)) * np.arange(-2, 3)  # float32 neighbours of 0.7
    assert len(set(np.searchsorted(e, later.astype(np.float64), side="right"))) == 5  # each in a bin of its own


def test_edges_never_decrease_and_stay_in_the_unit_range_for_gates_outside_it():
    """Values outside [0, 1] (a gate GateStats.check reports) still give sorted edges within
    [0, BOUNDED_TOP]: searchsorted needs them sorted. Unbounded values (squeeze inputs z) are not clamped."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=g, dtype=torch.float64) * 3 + torch.tensor([0.0, -10.0, 10.0, 0.5])
    bounded = histogram_edges(shift_and_quantiles(x, BINS)[1], bounded=True)
    assert (bounded.diff() >= 0).all() and bounded.min() >= 0 and bounded.max() <= BOUNDED_TOP
    free = histogram_edges(shift_and_quantiles(x, BINS)[1], bounded=False)
    assert (free.diff() > 0).all() and (free[:, 0] < x.amin(0)).all() and (free[:, -1] > x.amax(0)).all()


def test_non_finite_values_are_left_out_of_the_quantiles():
    x = torch.linspace(0.0, 1.0, 37, dtype=torch.float64)[:, None].repeat(1, 3)
    x[:10, 1], x[:, 2] = torch.nan, torch.inf
    shift, quantiles = shift_and_quantiles(x, BINS)
    np.testing.assert_allclose(quantiles[1], shift_and_quantiles(x[10:, :1], BINS)[1][0])
    np.testing.assert_allclose(shift[1], x[10:, 1].mean(), rtol=1e-15)
    assert (quantiles[2] == 0).all() and shift[2] == 0
