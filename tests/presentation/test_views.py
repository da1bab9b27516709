"""The views the dashboard and reports show, checked against the raw statistics and the run's tables."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.presentation import views
from analysis.errors import RunFolderError
from analysis.jobs import save_run
from analysis.capture.planted import planted_stats, resnet_gates
from analysis.capture.stats import StatsConfig

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
        mean = (total.sum(0) / n).numpy()
        std = (total_sq.sum(0) / n - (total.sum(0) / n) ** 2).clamp(min=0).sqrt().numpy()
        np.testing.assert_allclose(means[gate.name][0], mean, rtol=1e-12)
        np.testing.assert_allclose(means[gate.name][1], std, rtol=1e-6, atol=1e-9)


def test_gate_distribution_is_the_stored_histogram(run):
    hist = run.stats.histogram("SE_4_2")[0][..., 1:-1].double()  # [K, C, B] without under/overflow
    block = views.gate_distribution(run, "SE_4_2")
    one = views.gate_distribution(run, "SE_4_2", channel=3, classes=[1, 4])
    expected = hist.sum(1) / hist.sum(1).sum(1, keepdim=True)
    np.testing.assert_allclose(block["share"].to_numpy(), expected.flatten().numpy())
    expected = hist[[1, 4], 3] / hist[[1, 4], 3].sum(1, keepdim=True)
    np.testing.assert_allclose(one["share"].to_numpy(), expected.flatten().numpy())
    assert one["bin_center"].iloc[0] == pytest.approx(0.05) and one["class_name"].iloc[-1] == "class 4"


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
    for block, (mean, _) in means.items():
        others = np.delete(mean, 2, axis=0).mean(0)
        brute += [(mean[2, c] - others[c], block, c) for c in range(mean.shape[1])]
    brute = sorted(brute, reverse=True)[:5]
    assert list(zip(top["block"], top["channel"])) == [(b, c) for _, b, c in brute]
    np.testing.assert_allclose(top["lift"], [v for v, _, _ in brute])


def test_summary_reads_the_block_table(run):
    s = views.summary(run)
    b = run.blocks.set_index("block")
    assert s["most_specific"] == b["eta2_excess"].idxmax() and s["least_specific"] == b["eta2_excess"].idxmin()
    assert s["most_specific_eta2"] == b.loc[s["most_specific"], "eta2_mean"]
    assert s["onset"] == run.onset and s["samples"] == 240 and s["classes"] == 6 and s["channels"] == sum(g.channels for g in GATES)
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
