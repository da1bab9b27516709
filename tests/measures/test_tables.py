"""The tables a run stores, against direct computations on the raw gate values they summarise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.measures.notions import ONSET_MIN_EXCESS, NotionRules
from analysis.measures.tables import block_table, channel_table, class_mean_table, run_tables
from analysis.testing import fakes
from analysis.testing.fakes import FakeStats


CHANNEL_COLUMNS = [
    "block", "depth", "channel", "eta2", "eps2", "class_mod", "F", "p_value", "significant", "selectivity",
    "mi_bits", "preferred_class", "preferred_class_name", "mean", "std", "sat_high", "sat_low",
]  # fmt: skip


BLOCK_COLUMNS = [
    "block", "depth", "rel_depth", "path", "channels", "samples", "classes", "eta2_mean", "eta2_null",
    "eta2_excess", "eta2_ci_low", "eta2_ci_high", "eps2_mean", "class_mod", "class_mod_perm_q95",
    "class_mod_untrained", "class_mod_untrained_low", "eta2_perm", "perm_p", "eta2_untrained",
    "eta2_untrained_low", "eta2_z", "profile_sep", "shape_sep", "shape_sep_ci_low", "shape_sep_ci_high",
    "affine_r2", "shape_sep_perm", "shape_sep_perm_max", "shape_sep_perm_q95", "shape_sep_untrained", "shape_sep_untrained_low",
    "frac_significant", "selectivity_median", "mi_bits_mean", "class_cosine_mean", "class_corr_mean",
    "probe_acc", "probe_chance", "probe_p", "probe_perm", "probe_perm_chance", "probe_selectivity", "probe_per_class", "probe_ncm",
    "probe_untrained", "probe_z", "sat_high", "sat_low", "gate_mean", "gate_std", "detectable_share",
    "magnitude_share", "shape_share",
]  # fmt: skip
CONTROLS = {"eta2_untrained", "eta2_untrained_low", "class_mod_untrained", "class_mod_untrained_low", "eta2_z",
            "shape_sep_untrained", "shape_sep_untrained_low", "probe_untrained", "probe_z", "magnitude_share",
            "shape_share"}  # not collected, or undetermined without them


def test_channel_table_has_every_column_and_one_row_per_channel() -> None:
    mixed = fakes.mixed()
    ch = channel_table(mixed)
    assert list(ch.columns) == CHANNEL_COLUMNS
    assert ch["block"].tolist() == ["SE_1"] * 6 + ["SE_2"] * 4
    assert ch["channel"].tolist() == list(range(6)) + list(range(4))
    assert ch["depth"].tolist() == [1] * 6 + [2] * 4
    assert ch["significant"].dtype == bool and ch["preferred_class"].dtype == np.int64


def test_constant_gates_have_zero_specificity_and_no_nan() -> None:
    constant = fakes.constant()
    ch = channel_table(constant)
    assert (ch["eta2"] == 0).all() and (ch["F"] == 0).all() and (ch["p_value"] == 1).all()
    assert (ch["mi_bits"] == 0).all() and (ch["selectivity"] == 0).all() and (ch["std"] == 0).all()
    assert not ch["significant"].any() and (ch["preferred_class"] == 0).all()
    assert not ch.isna().any().any()
    blocks = block_table(constant).set_index("block")
    assert not blocks.drop(columns=list(CONTROLS)).isna().any().any()
    assert (blocks[["eta2_mean", "eta2_ci_low", "eta2_ci_high", "frac_significant", "mi_bits_mean"]] == 0).all().all()
    assert blocks["class_corr_mean"].tolist() == pytest.approx([1, 1, 1])
    assert blocks["class_cosine_mean"].tolist() == pytest.approx([1, 1, 1])
    assert blocks["sat_high"].tolist() == [0.0, 1.0, 0.5] and (blocks["sat_low"] == 0).all()
    assert blocks["gate_mean"].tolist() == pytest.approx([0.7, 1.0, 0.85])
    assert blocks["gate_std"].tolist() == pytest.approx([0.0, 0.0, 0.15])


def test_block_table_columns_bookkeeping_and_moments() -> None:
    depth_model = fakes.depth_model()
    blocks = block_table(depth_model)
    assert list(blocks.columns) == BLOCK_COLUMNS
    assert blocks["block"].tolist() == ["SE_2_1", "SE_2_2", "SE_3_1", "SE_3_2"]
    assert blocks["rel_depth"].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert blocks["channels"].tolist() == [24, 24, 32, 32]
    assert (blocks["samples"] == 2000).all() and (blocks["classes"] == 10).all()
    assert blocks["path"].tolist() == [f"net.{n}" for n in blocks["block"]]
    for _, row in blocks.iterrows():
        v = depth_model.values[row["block"]].astype(np.float64)
        assert row["gate_mean"] == pytest.approx(v.mean(), rel=1e-9)
        assert row["gate_std"] == pytest.approx(v.std(), rel=1e-9)
        assert row["sat_high"] == pytest.approx((v >= 0.9).mean())  # 0.9 and 0.1 are bin edges
        assert row["sat_low"] == pytest.approx((v < 0.1).mean())


def test_block_table_reuses_a_channel_table_and_redoes_significance_at_its_q() -> None:
    depth_model = fakes.depth_model()
    channels = channel_table(depth_model)
    assert block_table(depth_model, channels=channels).equals(block_table(depth_model))
    loose = block_table(depth_model, rules=NotionRules(q=0.5), channels=channels)
    strict = block_table(depth_model, rules=NotionRules(q=0.5))
    assert loose["frac_significant"].tolist() == strict["frac_significant"].tolist()


def test_planted_blocks_are_specific_and_null_blocks_sit_at_chance() -> None:
    depth_model = fakes.depth_model()
    blocks = block_table(depth_model).set_index("block")
    null = (10 - 1) / (2000 - 1)
    assert (blocks["eta2_null"] == null).all()
    for name in ["SE_2_1", "SE_2_2"]:
        row = blocks.loc[name]
        se = (row["eta2_ci_high"] - row["eta2_ci_low"]) / (2 * 2.364624251592784)  # t, 7 degrees of freedom
        assert abs(row["eta2_mean"] - null) < 4 * se, name
        assert row["eta2_ci_low"] < null < row["eta2_ci_high"], name
        assert row["frac_significant"] <= 0.1, name
        assert row["probe_acc"] < row["probe_chance"] + 0.08 and row["probe_p"] > 0.001, name
        assert row["class_corr_mean"] > 0.9, name  # the class-mean curves overlap
    # Miller-Madow removes the first-order bias only: class-free blocks keep a small positive
    # residual, so they are checked against the class-specific blocks (an order of magnitude apart),
    # not against a bound read off this data.
    free_mi = blocks.loc[["SE_2_1", "SE_2_2"], "mi_bits_mean"].abs().max()
    assert free_mi * 10 < blocks.loc[["SE_3_1", "SE_3_2"], "mi_bits_mean"].min()
    for name in ["SE_3_1", "SE_3_2"]:
        row = blocks.loc[name]
        assert row["eta2_mean"] > 0.6 and row["eta2_ci_low"] > 50 * null, name
        assert row["frac_significant"] == 1.0, name
        assert row["probe_acc"] > 0.9 and row["probe_p"] < 1e-50, name
        assert row["mi_bits_mean"] > 0.5, name
        assert row["class_corr_mean"] < 0.5, name
    ch = channel_table(depth_model)
    assert ch.loc[ch["block"] == "SE_3_2", "eta2"].min() > 0.8


def test_single_class_gives_documented_nans_only() -> None:
    y = np.zeros(200, dtype=np.int64)
    v = np.random.default_rng(9).uniform(size=(200, 3))
    one = FakeStats({"SE_1": v}, y, num_classes=2)
    ch = channel_table(one)
    assert ch["F"].isna().all() and ch["p_value"].isna().all() and not ch["significant"].any()
    assert (ch["eta2"] == 0).all() and (ch["selectivity"] == 0).all() and (ch["mi_bits"] == 0).all()
    blocks = block_table(one)
    documented = {"probe_acc", "probe_chance", "probe_p", "probe_ncm", "probe_per_class", "probe_selectivity",
                  "probe_perm", "probe_perm_chance", "eps2_mean", "profile_sep", "shape_sep", "shape_sep_ci_low", "shape_sep_ci_high", "affine_r2"} | CONTROLS
    assert set(blocks.columns[blocks.isna().any()]) == documented
    assert blocks.loc[0, "eta2_null"] == 0.0 and blocks.loc[0, "class_corr_mean"] == 1.0


def test_class_mean_table_matches_a_groupby_of_the_raw_values() -> None:
    mixed = fakes.mixed()
    table = class_mean_table(mixed)
    assert list(table.columns) == ["block", "class", "class_name", "channel", "mean", "std", "count"]
    assert len(table) == 4 * (6 + 4)  # class 4 has no samples: no rows
    for name, v in mixed.values.items():
        raw = pd.DataFrame(v.astype(np.float64)).assign(cls=mixed.labels).melt(id_vars="cls", var_name="channel")
        grouped = raw.groupby(["cls", "channel"])["value"]
        expected = grouped.agg(["mean", "count"]).assign(std=grouped.std(ddof=0))
        got = table[table["block"] == name].set_index(["class", "channel"])
        assert np.allclose(got["mean"], expected["mean"], rtol=1e-12)
        assert np.allclose(got["std"], expected["std"], rtol=1e-9)
        assert (got["count"].to_numpy() == expected["count"].to_numpy()).all()
        assert (got["class_name"].astype(str) == [f"class {k}" for k in got.index.get_level_values(0)]).all()


def test_a_gate_without_samples_raises_nothing_and_reports_nan_only_where_documented() -> None:
    empty = FakeStats({"SE_1": np.zeros((0, 3))}, np.zeros(0, dtype=np.int64), num_classes=4)
    ch = channel_table(empty)
    assert set(ch.columns[ch.isna().any()]) == {"mean", "std", "sat_high", "sat_low", "class_mod"}
    assert (ch["eta2"] == 0).all() and (ch["mi_bits"] == 0).all() and (ch["p_value"] == 1).all()
    blocks = block_table(empty)
    assert set(blocks.columns[blocks.isna().any()]) == {
        "eta2_ci_low", "eta2_ci_high", "probe_acc", "probe_chance", "probe_p", "sat_high", "sat_low",
        "gate_mean", "gate_std", "class_mod", "probe_ncm", "probe_per_class", "probe_perm", "probe_perm_chance", "probe_selectivity",
        "profile_sep", "shape_sep", "shape_sep_ci_low", "shape_sep_ci_high", "shape_sep_perm", "shape_sep_perm_max",
        "class_mod_perm_q95", "shape_sep_perm_q95", "affine_r2",
    } | CONTROLS  # fmt: skip
    assert blocks.loc[0, "samples"] == 0 and blocks.loc[0, "eta2_null"] == 0.0
    assert len(class_mean_table(empty)) == 0


def test_run_tables_computes_every_stored_table_and_the_onset_entry() -> None:
    depth_model = fakes.depth_model()
    tables, onset = run_tables(depth_model)
    assert list(tables) == ["blocks", "channels", "class_means"]
    assert tables["channels"].equals(channel_table(depth_model))
    assert tables["blocks"].equals(block_table(depth_model))
    assert tables["class_means"].equals(class_mean_table(depth_model))
    assert onset["detectable"] == "SE_3_1" and onset["block"] is None  # shape: no control, undetermined
    assert onset["notions"]["shape"]["status"] == "undetermined"
    assert onset["rule_detectable"] == onset["notions"]["detectable"]["rule"] and "eta2_mean" in onset["rule_detectable"]
    assert onset["rule"] == onset["notions"]["shape"]["rule"] and "shape_sep" in onset["rule"]
    assert onset["thresholds"]["min_excess"] == ONSET_MIN_EXCESS and onset["thresholds"]["shape_margin"] == 0.0
    _, strict = run_tables(depth_model, rules=NotionRules(min_excess=0.99))
    assert strict["detectable"] is None and strict["thresholds"]["min_excess"] == 0.99
