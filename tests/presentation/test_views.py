"""The views the dashboard and reports show, checked against the raw statistics and the run's tables."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.measures import schema
from analysis.presentation import views
from analysis.errors import RunFolderError
from analysis.jobs import save_run
from analysis.capture.stats import StatsConfig
from analysis.testing.planted import planted_stats, resnet_gates

GATES = resnet_gates((8, 8, 8, 12, 12, 12, 12, 16, 16, 16, 16, 16, 16, 24, 24, 24))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    stats = planted_stats(GATES, num_classes=6, samples_per_class=40, config=StatsConfig(num_classes=6, reservoir=8, bins=10))
    return save_run(stats, tmp_path_factory.mktemp("runs") / "planted", {"model": "synthetic"})


def test_planted_stats_are_consistent_and_get_more_specific_with_depth(run):
    run.stats.check()
    eta2 = run.blocks["eta2_mean"].to_numpy()
    assert eta2[:3].mean() < 2 * run.blocks["eta2_null"].iloc[0] < eta2[-3:].mean()
    hist = run.stats.histogram("SE_5_3")[0]
    count, _, _ = run.stats.moments("SE_5_3")
    assert (hist.sum(-1) - count.sum(0)[:, None]).abs().max() <= 6  # rounded expected counts, B=10 bins


def test_class_mean_arrays_equal_the_moments(run):
    means = views.class_mean_arrays(run)
    assert list(means) == views.block_names(run)
    for gate in GATES:
        count, total, total_sq = run.stats.moments(gate.name)
        n = count.sum(0).double()[:, None]
        mean = (run.stats.shift(gate.name) + total.sum(0) / n).numpy()  # moments of x - shift
        std = (total_sq.sum(0) / n - (total.sum(0) / n) ** 2).clamp(min=0).sqrt().numpy()
        np.testing.assert_allclose(means[gate.name][0], mean, rtol=1e-12)
        np.testing.assert_allclose(means[gate.name][1], std, rtol=1e-6, atol=1e-9)


def test_gate_distribution_is_the_stored_histogram(run):
    """One channel's rows tile the line (underflow, its bins of positive width, overflow) and their
    cumulative shares are the stored counts' CDF at each row's upper bound; density = share / width."""
    counts, edges = run.stats.histogram("SE_4_2")  # [K, C, B + 2] with under/overflow, [C, B + 1]
    e = edges[3].numpy()
    one = views.gate_distribution(run, "SE_4_2", channel=3, classes=[1, 4])
    for klass in (1, 4):
        rows, c = one[one["class"] == klass], counts[klass, 3].numpy()
        lo, hi = rows["bin_lo"].to_numpy(), rows["bin_hi"].to_numpy()
        assert lo[0] == -np.inf and hi[-1] == np.inf and (lo[1:] == hi[:-1]).all() and (hi > lo).all()
        cdf = np.array([c[: np.searchsorted(e, h, side="right")].sum() for h in hi[:-1]] + [c.sum()]) / c.sum()
        np.testing.assert_allclose(rows["share"].cumsum(), cdf, rtol=1e-12)
        np.testing.assert_allclose(rows["density"].iloc[1:-1], (rows["share"] / (hi - lo)).iloc[1:-1], rtol=1e-12)
        assert rows["density"].iloc[[0, -1]].isna().all()  # under- and overflow: no width
    assert one["class_name"].iloc[-1] == "class 4"
    block = views.gate_distribution(run, "SE_4_2")  # every channel on one grid: each class's mass kept
    np.testing.assert_allclose(block.groupby("class")["share"].sum().to_numpy(), 1.0, rtol=1e-9)
    width = block["bin_hi"] - block["bin_lo"]
    np.testing.assert_allclose(block["density"], block["share"] / width, rtol=1e-12)
    np.testing.assert_allclose(width, width.iloc[0], rtol=1e-9)  # equal steps: the density's shape is the share's


def test_class_similarity_is_the_correlation_of_profiles(run):
    mean = views.class_mean_arrays(run)["SE_5_1"][0]
    np.testing.assert_allclose(views.class_similarity(mean), np.corrcoef(mean), atol=1e-12)
    assert np.allclose(views.class_similarity(np.ones((3, 5))), 0)  # constant profiles: no NaN


def test_preferred_order_groups_channels_by_preferred_class(run):
    order = views.preferred_order(run, "SE_4_1")
    ch = run.channels.query("block == 'SE_4_1'").set_index("channel")
    assert sorted(order) == list(range(16))
    assert list(ch.loc[order, "preferred_class"]) == sorted(ch["preferred_class"])


def test_class_drivers_counts_and_lifts(run):
    means = views.class_mean_arrays(run)
    per_block, top = views.class_drivers(run, means, klass=2, top=5)
    ch = run.channels
    for row in per_block.itertuples():
        assert row.preferring == ((ch["block"] == row.block) & (ch["preferred_class"] == 2)).sum()
    brute = []
    for block, (mean, _) in means.items():  # only channels whose largest class mean is class 2's
        others = np.delete(mean, 2, axis=0).mean(0)
        brute += [(mean[2, c] - others[c], block, c) for c in range(mean.shape[1]) if mean[:, c].argmax() == 2]
    brute = sorted(brute, reverse=True)[:5]
    assert list(zip(top["block"], top["channel"])) == [(b, c) for _, b, c in brute]
    np.testing.assert_allclose(top["lift"], [v for v, _, _ in brute])
    schema.validate("class_blocks", per_block)  # the columns the README's reference documents
    schema.validate("class_channels", top)


def test_summary_reads_the_block_table(run):
    s = views.summary(run)
    b = run.blocks.set_index("block")
    assert s["most_specific"] == b["eta2_excess"].idxmax() and s["least_specific"] == b["eta2_excess"].idxmin()
    assert s["most_specific_eta2"] == b.loc[s["most_specific"], "eta2_mean"]
    onset = run.document["onset"]
    assert s["onset"] == onset["block"] and s["onset_detectable"] == onset["detectable"]
    assert s["samples"] == 240 and s["classes"] == 6 and s["channels"] == sum(g.channels for g in GATES)
    assert s["saturated"] == [] and s["probe_best"] == b["probe_acc"].max()


def test_default_choices():
    assert views.spread_out(list(range(10)), 4) == [0, 3, 6, 9]
    assert views.spread_out([1, 2], 4) == [1, 2]


def test_unknown_block_is_a_clear_error(run):
    with pytest.raises(RunFolderError, match="no block 'SE_9_9'"):
        views.top_samples(run, "SE_9_9", 0)


def test_top_samples_are_the_stored_top_k(run):
    top = views.top_samples(run, "SE_3_2", 4)
    values, ids = run.stats.top("SE_3_2")
    assert top["sample_id"].tolist() == ids[4].tolist() and np.allclose(top["gate"], values[4].numpy())
    assert top["rank"].tolist() == list(range(1, len(top) + 1)) and top["gate"].is_monotonic_decreasing


def adaptive_run(values: np.ndarray, labels: np.ndarray, edges: np.ndarray) -> SimpleNamespace:
    """What views reads of a run with adaptive histograms (counts [K, C, B+2], per-channel edges
    [C, B+1]), the counts made by brute force with numpy from every gate value [N, C]."""
    k, (c, b1) = labels.max() + 1, edges.shape
    counts = np.zeros((k, c, b1 + 1), dtype=np.int64)
    for ch in range(c):
        cell = np.searchsorted(edges[ch], values[:, ch], side="right")  # 0 under, B+1 at or above the last edge
        np.add.at(counts, (labels, ch, cell), 1)
    tensors = {"hist": torch.from_numpy(counts), "edges": torch.from_numpy(edges)}
    return SimpleNamespace(
        path="adaptive", meta=SimpleNamespace(stats=SimpleNamespace(class_names=tuple(f"c{i}" for i in range(k)))),
        blocks=pd.DataFrame({"block": ["SE_2_1"], "channels": [c]}),
        gate_tensor=lambda gate, field, rows=slice(None): tensors[field][rows])


@pytest.fixture(scope="module")
def narrow():
    """Narrow skewed gates (exponential, scale 1e-3) at a different level per channel, 3 classes
    shifting the gate by 1e-3 each; 20 bins cut at the quantiles of the first 200 values (so that
    later ones under- and overflow), channel 5's with two repeated edges (a zero-width bin, as where
    GateStats' first batch ties)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 3000)
    values = 0.5 + np.linspace(-0.05, 0.05, 6) + 1e-3 * rng.exponential(size=(3000, 6)) + 1e-3 * labels[:, None]
    edges = np.quantile(values[:200], np.linspace(0, 1, 21), axis=0).T.copy()
    edges[5, 8] = edges[5, 7]
    return values, labels, edges


@pytest.mark.parametrize("channel", [4, 5])
def test_one_channel_of_an_adaptive_histogram_is_its_own_bins_as_shares_and_densities(narrow, channel):
    values, labels, edges = narrow
    e = edges[channel]
    dist = views.gate_distribution(adaptive_run(values, labels, edges), "SE_2_1", channel=channel, classes=[0, 2])
    positive = np.unique(e)  # the bins of positive width
    for klass, rows in dist.groupby("class"):
        v = values[labels == klass, channel]
        inner = np.histogram(v, positive)[0]
        inner[-1] -= (v == e[-1]).sum()  # numpy's last bin is closed; ours leaves its edge to the overflow
        expected = np.r_[(v < e[0]).sum(), inner, (v >= e[-1]).sum()] / len(v)
        np.testing.assert_allclose(rows["share"], expected, rtol=0, atol=1e-15)
        np.testing.assert_allclose(rows["bin_lo"].iloc[1:-1], positive[:-1])
        np.testing.assert_allclose(rows["bin_hi"].iloc[1:-1], positive[1:])
        np.testing.assert_allclose(rows["density"].iloc[1:-1], inner / len(v) / np.diff(positive), rtol=1e-12)
    assert len(dist) == 2 * (len(positive) + 1)  # per class: under- and overflow, the bins of positive width
    assert np.diff(positive).max() > 3 * np.diff(positive).min()  # unequal bins: share and density differ in shape
    assert 0 < dist.loc[dist["bin_lo"] == -np.inf, "share"].sum()  # some values fell below the first batch's range


def test_a_blocks_channels_pooled_on_one_grid_keep_every_value_and_their_order(narrow):
    """Each channel's bins spread uniformly over the grid: exact total mass, and at every grid point
    the pooled CDF is off the true one by at most the mass of the channel cells that hold it."""
    values, labels, edges = narrow
    counts = adaptive_run(values, labels, edges).gate_tensor("SE_2_1", "hist").numpy()
    pooled, grid = views.pooled_histogram(counts, edges, points=50)
    for klass in range(3):
        v = values[labels == klass]
        assert pooled[klass].sum() == pytest.approx(v.size, abs=1e-9)
        cdf = np.cumsum(pooled[klass])
        true = np.array([(v <= g).sum() for g in grid[1:]])
        # the cell of each channel that holds g (under- and overflow: their values lie anywhere beyond the edge)
        straddle = sum(counts[klass, c, np.searchsorted(edges[c], grid[1:], side="right")] for c in range(6))
        assert (np.abs(cdf - true) <= straddle + 1e-9).all()
    shares = views.gate_distribution(adaptive_run(values, labels, edges), "SE_2_1", classes=[0, 1, 2])
    means = shares.assign(w=shares["bin_center"] * shares["share"]).groupby("class")["w"].sum()
    grid_step, bin_step = grid[1] - grid[0], np.diff(edges).max()
    for klass in range(3):  # each value moves by at most one grid bin and one channel bin
        assert abs(means[klass] - values[labels == klass].mean()) <= grid_step + bin_step
