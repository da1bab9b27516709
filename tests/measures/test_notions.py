"""The notions of class-specific on planted networks with a known answer: each onset at its planted
block, undetermined without its control, certainty from resamples and control seeds, intervals
that cover, and an interval that holds on a nearly flat common profile."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from analysis.capture.collect import collect
from analysis.measures.notions import NO_CONTROL, NotionRules, answer, resample_statistics
from analysis.measures.resampling import bootstrap_interval, shard_weights
from analysis.measures.tables import run_tables
from analysis.testing.brute import shape_separation
from analysis.testing.fakes import FakeStats
from analysis.testing.nets import batches
from analysis.testing.notions import K, FlatProfileNet, flat_data, notion_cases, planted_block


@cache
def planted() -> tuple[FakeStats, dict, dict, dict]:
    """The planted trained network, its controls' blocks tables by seed, and its tables and onset."""
    trained, controls = notion_cases()
    bands = {seed: run_tables(c)[0]["blocks"] for seed, c in controls.items()}
    tables, onset = run_tables(trained, controls=bands)
    return trained, bands, tables, onset


def test_each_notion_starts_at_its_planted_block_with_full_certainty() -> None:
    """SE_1 class-free, SE_2 detectable but 1e-4 gate units, SE_3 a class shift and scale of every
    gate (large, no shape), SE_4 and SE_5 each class opening its own channels."""
    _, bands, tables, onset = planted()
    notions = onset["notions"]
    assert [notions[n]["block"] for n in ("detectable", "magnitude", "shape")] == ["SE_2", "SE_3", "SE_4"]
    for name, record in notions.items():
        assert record["status"] == "found" and record["certainty"] >= 0.95, (name, record["shares"])
        assert sum(record["shares"].values()) == pytest.approx(1.0)
    assert notions["magnitude"]["draws"] == notions["magnitude"]["resamples"] * len(bands) > 0
    assert notions["detectable"]["draws"] == notions["detectable"]["resamples"]  # chance: no seeds
    assert notions["shape"]["control_seeds"] == sorted(bands) and notions["detectable"]["control_seeds"] == []
    blocks = tables["blocks"].set_index("block")
    assert blocks.loc["SE_1", ["detectable_share", "magnitude_share", "shape_share"]].max() <= 0.05
    assert blocks.loc[["SE_4", "SE_5"], ["detectable_share", "magnitude_share", "shape_share"]].min().min() >= 0.95
    shape = notions["shape"]
    assert shape["value"] == blocks.at["SE_4", "shape_sep"]
    assert shape["band"] == [blocks.at["SE_4", "shape_sep_untrained_low"], blocks.at["SE_4", "shape_sep_untrained"]]
    assert shape["band"] == [min(b.at[3, "shape_sep"] for b in bands.values()), max(b.at[3, "shape_sep"] for b in bands.values())]
    assert blocks.at["SE_3", "affine_r2"] > 0.99 and blocks.at["SE_4", "affine_r2"] < 0.2


def test_without_the_untrained_control_magnitude_and_shape_are_undetermined_never_a_block() -> None:
    trained, _, _, _ = planted()
    tables, onset = run_tables(trained)
    for name in ("magnitude", "shape"):
        record = onset["notions"][name]
        assert record["status"] == "undetermined" and record["reason"] == NO_CONTROL
        assert record["block"] is None and record["certainty"] is None and record["shares"] == {}
        assert tables["blocks"][f"{name}_share"].isna().all()
    assert onset["block"] is None and onset["notions"]["detectable"]["block"] == "SE_2"  # chance is its control
    untrained, _ = notion_cases(seeds=(1,))
    no_null = FakeStats(trained.values, trained.labels, K, permutations=0)
    _, onset = run_tables(no_null, controls={1: run_tables(untrained)[0]["blocks"]})
    assert onset["notions"]["shape"]["status"] == "undetermined" and "permutation" in onset["notions"]["shape"]["reason"]


def test_an_untrained_network_as_specific_as_a_block_moves_the_onset_past_it() -> None:
    """The onset needs the notion in every later block: a control that matches SE_4 (one seed of
    the band is enough) leaves SE_5."""
    trained, bands, tables, _ = planted()
    matching = {**bands, 9: bands[1].assign(shape_sep=np.where(bands[1]["block"] == "SE_4", 1.0, bands[1]["shape_sep"]))}
    draws = {k: np.zeros((0, 5)) for k in ("eta2_mean", "eta2_null", "frac_significant", "class_mod", "shape_sep")}
    from analysis.measures.tables import control_statistics

    values = control_statistics(matching, tables["blocks"]["block"].tolist())
    shares, records = answer(tables["blocks"], draws, values)
    assert records["shape"]["block"] == "SE_5"
    # without resamples the draws are the seeds alone: 3 of 4 give SE_4, the matching one SE_5
    assert records["shape"]["draws"] == 4 and records["shape"]["shares"] == {"SE_4": 0.75, "SE_5": 0.25}
    assert records["shape"]["certainty"] == 0.25 and shares["shape_share"][3] == 0.75


def test_resamples_with_every_shard_once_give_the_tables_values() -> None:
    trained, _, tables, _ = planted()
    names = tables["blocks"]["block"].tolist()
    once = resample_statistics(trained, names, shard_weights(8, 3, 0), 0.05)  # centred on the all-data values
    for statistic, values in once.items():
        assert values.mean(0) == pytest.approx(tables["blocks"][statistic].to_numpy(), rel=1e-9, abs=1e-15)


def test_shape_interval_covers_the_planted_value_in_a_small_simulation() -> None:
    """30 data sets of i.i.d. images of one planted block (each class opens its own channels) with a
    known population shape_sep; the expanded shard-bootstrap interval (8 shards, 200 resamples).
    Measured beforehand over 150 data sets: coverage 0.91 (the 8 shards limit it), so 30 give at
    least 22 with probability 0.99; and the interval is no wider than 3 times the spread of the
    estimates over the data sets."""
    rng = np.random.default_rng(0)
    block = planted_block("own", rng)
    truth, hits, half, estimates = block.shape_sep(), 0, [], []
    for rep in range(30):
        draw = np.random.default_rng(1000 + rep)
        y = draw.integers(0, K, 900)
        stats = FakeStats({"B": block.sample(y, draw)}, y, K, permutations=0, reservoir=1)
        shape = resample_statistics(stats, ["B"], shard_weights(8, 200, rep), 0.05)["shape_sep"][:, 0]
        low, high = bootstrap_interval(shape, 8)
        hits += low <= truth <= high
        half.append((high - low) / 2)
        estimates.append(np.median(shape))
    assert hits >= 22
    assert np.mean(half) < 3 * 1.96 * np.std(estimates)


@cache
def flat_profile() -> tuple[FlatProfileNet, object, dict]:
    """The issue's planted network on a nearly flat common curve, 2000 images, with its tables."""
    x, y = flat_data(2000)
    net = FlatProfileNet().centre(flat_data(20000, seed=123)[0])
    stats = collect(net, batches(x, y, 500), 10, progress=False, inputs=False)
    return net, (x, y), run_tables(stats, rules=NotionRules(resamples=200))[0]["blocks"].set_index("block")


def test_a_nearly_flat_common_curve_keeps_the_shape_interval_far_above_its_null() -> None:
    """Issue 23: the common curve's spread across channels is ~1e-3 while the class blocks' curves
    differ by ~0.05-0.1 gate units. Their shape_sep interval stays far above the permutation null
    (it went below it with the spread of m as yardstick and a jackknife), and agrees with a
    bootstrap over images of every gate vector (brute force, 200 resamples): each end within half
    the image bootstrap's width (stated before the run)."""
    net, (x, y), blocks = flat_profile()
    gates, labels = net.gates(x), y.numpy()
    m = np.stack([gates["SE_3_3"][labels == k].mean(0) for k in range(10)]).mean(0)
    assert m.std() < 5e-3
    rng = np.random.default_rng(0)
    for name in ("SE_3_1", "SE_3_2", "SE_3_3"):
        row = blocks.loc[name]
        assert row["shape_sep_ci_low"] > 5 * row["shape_sep_perm_q95"], name
        v = gates[name].astype(np.float64)
        boot = [shape_separation(v[i], labels[i])[1] for i in (rng.integers(0, len(labels), len(labels)) for _ in range(200))]
        low, high = np.percentile(boot, [2.5, 97.5])
        assert abs(row["shape_sep_ci_low"] - low) < (high - low) / 2, name
        assert abs(row["shape_sep_ci_high"] - high) < (high - low) / 2, name
    for name in ("SE_2_1", "SE_2_2", "SE_2_3"):  # class-free: at the null
        assert blocks.at[name, "shape_sep"] < 2 * blocks.at[name, "shape_sep_perm_q95"], name
