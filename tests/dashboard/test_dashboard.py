"""The Streamlit dashboard: every page on a good and a broken run (AppTest), and in a real browser."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from PIL import Image


from analysis.cli import main
from analysis.experiments.trajectory import onset_table, trajectory_table
from analysis.jobs import save_run
from analysis.measures.similarity import similarity
from analysis.runs.folder import load_run, write_run
from analysis.capture.stats import StatsConfig
from analysis.presentation import figures, views
from analysis.presentation.answer import onset_lines
from analysis.presentation.captions import caption
from analysis.presentation.numbers import decimals
from analysis.testing.planted import planted_stats, resnet_gates
from analysis.resources import shipped_checkpoint
from analysis.testing.runs import NEW_COLUMNS, with_new_columns
from dashboard import charts as dashboard_charts
from dashboard import loaders, widgets

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
# title: (page file relative to the app, its address); the first page (Overview) is the default, at /
PAGES = {title: (f"screens/{file}", url if i else "") for i, (url, (file, title)) in enumerate(widgets.PAGES.items())}
CHROMIUM = Path("/usr/bin/chromium")
SECRET = "SECRET-OUTSIDE-MODEL"  # the model name of a run outside the runs folder, linked from inside it
CRAFTED = "![x](http://attacker.example/x.png) <img src=http://attacker.example/y.png> [link](http://attacker.example) **b**"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
EPOCHS = {"epoch_1": 1, "epoch_10": 10, "epoch_2": 2, "final": 20}  # the snapshots of one training: name, epoch
RUNS = ("good", "new", "controlled", "uncontrolled", "paper")  # planted, newer columns, untrained seeds + ablate +
# attribute, the shipped network with --control none, paper
HEATMAP_BLOCK = "block for the heatmap and distributions"  # the Block explorer's block picker
RUN_LIST = ["controlled", "crafted", "damaged", "empty", "epochs/epoch_1", "epochs/epoch_10", "epochs/epoch_2",
            "epochs/final", "good", "linked_meta", "linked_table", "new", "old", "paper", "uncontrolled"]


def plain(text: str) -> str:
    """Markdown source as the text it shows (backslash escapes removed)."""
    return re.sub(r"\\(.)", r"\1", text)


def markdown_texts(at) -> list[str]:
    """Every string of the page that Streamlit renders as Markdown: text elements, captions, alerts,
    metric labels and values, widget labels."""
    found = [e.value for kind in ("markdown", "caption", "error", "warning", "info", "success")
             for e in getattr(at, kind)]
    found += [v for m in at.metric for v in (m.label, m.value)]
    found += [w.label for kind in ("selectbox", "multiselect", "checkbox", "toggle", "number_input")
              for w in getattr(at, kind)]
    return found


def cli(*argv: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        assert main([*argv, "--quiet"]) == 0


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    """Run folders of every kind the dashboard meets: good (planted, no controls), new (newer block
    columns), controlled (the shipped network on Fashion-MNIST with its untrained control, ablated
    and attributed), uncontrolled (the same with --control none), paper (`se-analysis paper`: a
    stage-level removal), the epoch snapshots of one training, controls nested inside runs, and broken ones (damaged, old, empty, links out, crafted text)."""
    root = tmp_path_factory.mktemp("dash")
    stats = planted_stats(resnet_gates(tuple(range(4, 20))), 5, 30, config=StatsConfig(num_classes=5, reservoir=4))
    save_run(stats, root / "good", {"model": "synthetic", "data": {"spec": "synthetic:classes=5"}})
    for name, epoch in EPOCHS.items():  # names in another order than their epochs
        shutil.copytree(root / "good", root / "epochs" / name)
        meta = json.loads((root / "epochs" / name / "meta.json").read_text())
        (root / "epochs" / name / "meta.json").write_text(json.dumps({**meta, "checkpoint": {"epoch": epoch}}))
    for inner in ("good/untrained", "epochs/epoch_1/untrained/seed_0"):  # controls inside a run, either layout
        shutil.copytree(root / "good", root / inner)
    (root / "damaged").mkdir()
    shutil.copy(root / "good" / "meta.json", root / "damaged" / "meta.json")
    (root / "damaged" / "stats.safetensors").write_bytes(b"not a safetensors file")
    for table in ("blocks", "channels", "class_means"):
        (root / "damaged" / f"{table}.parquet").write_bytes(b"PAR1 truncated")
    (root / "old").mkdir()
    (root / "old" / "meta.json").write_text('{"version": 99}')
    (root / "empty").mkdir()
    outside = tmp_path_factory.mktemp("outside")
    shutil.copytree(root / "good", outside / "secret")
    meta = json.loads((outside / "secret" / "meta.json").read_text())
    (outside / "secret" / "meta.json").write_text(json.dumps({**meta, "model": SECRET}))
    secret_blocks = pd.read_parquet(outside / "secret" / "blocks.parquet").assign(path=SECRET)
    secret_blocks.to_parquet(outside / "secret" / "blocks.parquet", index=False)
    (root / "escape").symlink_to(outside / "secret")
    shutil.copytree(root / "good", root / "linked_meta")  # a real folder inside, its meta.json a link out
    (root / "linked_meta" / "meta.json").unlink()
    (root / "linked_meta" / "meta.json").symlink_to(outside / "secret" / "meta.json")
    shutil.copytree(root / "good", root / "linked_table")
    (root / "linked_table" / "blocks.parquet").unlink()
    (root / "linked_table" / "blocks.parquet").symlink_to(outside / "secret" / "blocks.parquet")
    save_run(stats, root / "crafted", {"model": CRAFTED, "data": {"spec": CRAFTED}})
    with_new_columns(root / "good", root / "new")
    cli("paper", "--model", "se_resnet20", "--random-init", "--data", "synthetic:classes=4,n=40,size=16,channels=1",
        "--per-class", "5", "--channels", "8", "--out", str(root / "paper"))
    if FASHION_MNIST.is_dir():
        common = ("--model", str(shipped_checkpoint("fmnist_se20")), "--data", "fashion-mnist:test", "--limit", "100",
                  "--out", str(root / "controlled"))
        cli("collect", *common, "--control", "untrained")
        cli("ablate", *common, "--groups", "block,all", "--resamples", "50")
        cli("attribute", *common)
        cli("collect", *common[:-1], str(root / "uncontrolled"), "--control", "none")
    return root


def needs(runs_dir, run: str) -> None:
    if not (runs_dir / run).is_dir():
        pytest.skip(f"the {run} run needs dataset-fashion-mnist")


def app_test(runs_dir, monkeypatch, run: str | None = None, page: str | None = None, **params: str):
    """The app on `page` (default the Overview) with `run` and `params` in its address, as a link opens it."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SE_ANALYSIS_RUNS", str(runs_dir))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.query_params.update({**({"run": run} if run else {}), **params})
    if page is not None:
        at.switch_page(PAGES[page][0])
    return at.run()


def captioned(page: str, run) -> list[str]:
    """The figure kinds (captions.caption) whose caption the page shows for `run`."""
    if page == "Interventions":
        blocks = run.has_table("interventions") and (views.intervention_rows(run)["kind"] == "block").any()
        return ["interventions"] * bool(blocks) + ["attributions"] * run.has_table("attribution_blocks")
    return {"Overview": ["depth", "saturation"] + ["shape"] * ("shape_sep" in run.blocks),
            "Block explorer": ["profiles", "heatmap", "distributions"], "Channel explorer": ["distributions"],
            "Classes": ["similarity"], "Compare": ["compare"], "Training": []}[page]


def selectbox(at, label: str):
    [box] = [s for s in at.selectbox if s.label == label]
    return box


def charts(at) -> list[dict]:
    """The Vega-Lite specs of the page's interactive charts."""
    return [json.loads(e.proto.spec) for e in at.get("vega_lite_chart")]


def listed(runs_dir) -> list[str]:
    return [r for r in RUN_LIST if (runs_dir / r).exists()]


def test_only_run_folders_inside_the_runs_folder_are_listed_never_their_controls(runs_dir, monkeypatch):
    at = app_test(runs_dir, monkeypatch)
    assert at.sidebar.selectbox[0].options == listed(runs_dir)  # no good/untrained, no .../untrained/seed_0
    at.switch_page(PAGES["Compare"][0]).run()
    comparable = [r for r in listed(runs_dir) if r not in ("damaged", "empty", "old", "linked_meta", "linked_table")]
    epochs = {r: (load_run(runs_dir / r).document.get("checkpoint") or {}).get("epoch") for r in comparable}
    assert at.multiselect[0].options == sorted(comparable, key=lambda r: (r.rpartition("/")[0], epochs[r] or math.inf, r))


def test_compare_starts_with_the_snapshots_of_one_training_in_epoch_order(runs_dir, monkeypatch):
    at = app_test(runs_dir, monkeypatch, "epochs/epoch_10", "Compare")
    assert not at.exception and not at.error
    assert at.multiselect[0].value == [f"epochs/{name}" for name in sorted(EPOCHS, key=EPOCHS.get)]
    table = at.dataframe[0].value
    assert table["run"].tolist() == at.multiselect[0].value and table["epoch"].tolist() == sorted(EPOCHS.values())
    assert not at.warning  # one rule, no controls: nothing mixed


def test_compare_says_each_notion_with_its_certainty_and_what_it_was_measured_against(runs_dir, monkeypatch):
    needs(runs_dir, "controlled")
    at = app_test(runs_dir, monkeypatch, "controlled", "Compare")
    at.multiselect[0].set_value(["uncontrolled", "controlled"]).run()
    table = at.dataframe[0].value.set_index("run")
    assert table.loc["controlled", "measured against"] == "untrained"
    assert table.loc["uncontrolled", "measured against"] == "permutation null only (no control)"
    for run in ("uncontrolled", "controlled"):  # meta.json as written, read here without the toolkit's types
        notions = load_run(runs_dir / run).document["onset"]["notions"]
        assert table.loc[run, "rules"].count("rule") == len(notions) == 3
        for name, notion in notions.items():
            cell = table.loc[run, f"onset ({name})"]
            if notion["status"] == "undetermined":
                assert cell == f"undetermined ({notion['reason']})"
            else:
                assert cell == f"{notion['block'] or 'no block'} (certainty {round(100 * notion['certainty'])}%)"
    cells = table.filter(like="onset (").loc["uncontrolled"].tolist()
    assert cells[1:] == ["undetermined (no untrained control)"] * 2  # magnitude and shape need the control
    assert "different rules or against other controls" in at.warning[0].value


@pytest.mark.parametrize("run", ["controlled", "uncontrolled"])
def test_the_overview_says_each_notion_with_its_certainty_or_why_it_is_undetermined(runs_dir, monkeypatch, run):
    needs(runs_dir, run)
    at = app_test(runs_dir, monkeypatch, run)
    notions = load_run(runs_dir / run).document["onset"]["notions"]
    lines = {text.split(":")[0]: text for text in map(plain, (m.value for m in at.markdown)) if text.startswith("onset (")}
    assert list(lines) == [f"onset ({name})" for name in notions] == ["onset (detectable)", "onset (magnitude)",
                                                                     "onset (shape)"]
    for name, notion in notions.items():
        line = lines[f"onset ({name})"]
        if notion["status"] == "undetermined":
            assert line == f"onset ({name}): undetermined ({notion['reason']})."
        else:
            assert line.startswith(f"onset ({name}): {notion['block'] or 'no block'}")
            assert f"certainty {round(100 * notion['certainty'])}% of {notion['draws']} draws" in line
    undetermined = [name for name, notion in notions.items() if notion["status"] == "undetermined"]
    assert undetermined == ([] if run == "controlled" else ["magnitude", "shape"])
    assert all(notion["reason"] == "no untrained control" for notion in map(notions.get, undetermined))
    rules = [text for text in map(plain, (m.value for m in at.markdown)) if text.startswith("**onset (")]  # the expander
    assert [rule.split("**")[1] for rule in rules] == list(lines)
    assert all(f"Rule: {notion['rule']}; {notion['certainty_rule']}." in rule for rule, notion in zip(rules, notions.values()))


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_each_kind_of_run(runs_dir, monkeypatch, page, run):
    needs(runs_dir, run)
    at = app_test(runs_dir, monkeypatch, run, page)
    assert not at.exception, at.exception
    assert at.header[0].value == (page if page != "Compare" else "Compare runs")
    assert not at.error, [e.value for e in at.error]
    images = {"Overview": 2, "Block explorer": 2, "Channel explorer": 1, "Classes": 1, "Compare": 1, "Interventions": 0,
              "Training": 0}
    assert len(at.image) >= images[page]
    assert len(charts(at)) == {"Block explorer": 1, "Classes": 1}.get(page, 0)  # the heatmap; the class shares
    for kind in captioned(page, load_run(runs_dir / run)):  # the reports' text under each figure
        assert any(caption(kind) in c.value for c in at.caption), (kind, [c.value for c in at.caption])
    if page == "Overview":
        assert [m.label for m in at.metric] == ["samples", "classes", "SE blocks", "gate channels", "accuracy"]
        assert at.metric[0].value == f"{load_run(runs_dir / run).meta.stats.samples:,}"
        assert at.metric[3].value == f"{load_run(runs_dir / run).blocks['channels'].sum():,}"
        assert set(onset_lines(load_run(runs_dir / run))) <= {plain(m.value) for m in at.markdown}
        warned = load_run(runs_dir / run).meta.warnings
        assert [plain(w.value) for w in at.warning] == [f"This run warns: {w}" for w in warned]
    if page == "Overview":  # the headline first, each number to its column's precision; every column below
        opened = load_run(runs_dir / run)
        headline, expected = at.dataframe[0].value, opened.blocks[views.present(opened, views.HEADLINE_COLUMNS)]
        assert headline.columns.tolist() == expected.columns.tolist() and headline["block"].tolist() == expected["block"].tolist()
        for column in expected.columns[1:]:
            places = decimals(expected[column])
            shown = pd.to_numeric(headline[column].replace("-", "nan"))
            np.testing.assert_allclose(shown, expected[column], atol=0.51 * 10.0 ** -places, equal_nan=True)
            assert (headline[column] == "-").tolist() == expected[column].isna().tolist()
        assert at.dataframe[1].value.columns.tolist() == opened.blocks.columns.tolist()
    if page == "Overview" and run == "new":
        measured = set(views.present(load_run(runs_dir / run), NEW_COLUMNS))  # what this run has
        assert measured and measured <= set(at.dataframe[1].value.columns)
        assert len(at.image) == 3  # depth, shape (shape_sep is measured), saturation
    if page == "Block explorer":  # the block shown first: the shape onset, else the last block
        blocks = load_run(runs_dir / run).blocks
        first = load_run(runs_dir / run).document["onset"]["block"] if run != "new" else "SE_4_2"
        first = first if first in blocks["block"].tolist() else blocks["block"].iloc[-1]
        assert selectbox(at, HEATMAP_BLOCK).value == first and at.dataframe[0].value["block"].tolist() == [first]
        assert charts(at)[0]["title"] == f"{first}: class-mean gates"
    if page == "Block explorer" and run == "new":  # controls beside the measures, as the run has them
        row, last = at.dataframe[0].value, load_run(runs_dir / run).blocks.set_index("block").loc["SE_4_2"]
        for column in ("shape_sep", "shape_sep_untrained", "eta2_perm", "probe_perm"):
            assert row[column].iloc[0] == last["depth"] + NEW_COLUMNS.index(column) / 100


def test_training_shows_each_notions_onset_by_epoch_and_the_cka_with_another_run(runs_dir, monkeypatch):
    at = app_test(runs_dir, monkeypatch, "epochs/epoch_10", "Training")
    assert not at.exception and not at.error
    snapshots = [load_run(runs_dir / "epochs" / name) for name in sorted(EPOCHS, key=EPOCHS.get)]
    expected = onset_table(trajectory_table(snapshots))
    shown = at.dataframe[0].value
    assert shown.columns.tolist() == expected.columns.tolist() and shown["epoch"].tolist() == sorted(EPOCHS.values())
    assert shown.astype(str).values.tolist() == expected.astype(str).values.tolist()
    assert len(at.image) == 1  # the trajectory figure
    selectbox(at, "compare the gates with").set_value("epochs/epoch_1").run()
    matrix = at.dataframe[1].value  # copies of one run: the same gate vectors, CKA 1 block for block
    direct = similarity(snapshots[0].stats, snapshots[-1].stats).pivot(index="block_a", columns="block_b", values="cka")
    np.testing.assert_allclose(matrix.to_numpy(), direct.loc[matrix.index, matrix.columns].to_numpy())
    np.testing.assert_allclose(np.diag(matrix.to_numpy()), 1.0)
    selectbox(at, "compare the gates with").set_value("paper").run()  # other data: said, never a number
    assert len(at.dataframe) == 1 and "read other data" in plain(at.warning[-1].value)
    at = app_test(runs_dir, monkeypatch, "good", "Training")  # no training beside it
    assert "not one of several epoch snapshots" in at.info[0].value


def shown_interventions(at, run) -> pd.DataFrame:
    """The page's interventions table, checked against the run's table: changes in points."""
    table, stored = at.dataframe[0].value, run.table("interventions")
    assert table["block"].tolist() == stored["group"].tolist() and table["kind"].tolist() == stored["kind"].tolist()
    for shown, raw in (("top1_pct", "acc"), ("change_pp", "acc_change"), ("change_pp_ci_low", "acc_change_ci_low"),
                       ("change_pp_ci_high", "acc_change_ci_high")):
        np.testing.assert_allclose(table[shown], 100 * stored[raw])
    return table


def test_interventions_after_a_stage_level_removal_show_their_figure_in_points(runs_dir, monkeypatch):
    run = load_run(runs_dir / "paper")
    at = app_test(runs_dir, monkeypatch, "paper", "Interventions")
    assert not at.exception and not at.error
    table = shown_interventions(at, run)
    assert set(table["kind"]) == {"set"} or set(table["kind"]) <= {"stage", "set", "all"}  # no single block
    assert len(at.image) == 1  # the groups' figure (no attributions yet)
    assert "Groups of blocks" in at.caption[0].value


def test_interventions_of_single_blocks_and_all_with_attributions(runs_dir, monkeypatch):
    needs(runs_dir, "controlled")
    run = load_run(runs_dir / "controlled")
    at = app_test(runs_dir, monkeypatch, "controlled", "Interventions")
    assert not at.exception and not at.error and not at.info
    assert set(shown_interventions(at, run)["kind"]) == {"block", "all"}
    assert len(at.image) == 3  # single blocks beside their prediction; all blocks; attributions
    assert at.dataframe[1].value.equals(run.table("attribution_blocks"))


def test_links_name_the_block_and_channel_a_page_opens(runs_dir, monkeypatch):
    at = app_test(runs_dir, monkeypatch, "good", "Block explorer", block="SE_3_2")
    assert selectbox(at, HEATMAP_BLOCK).value == "SE_3_2" and charts(at)[0]["title"] == "SE_3_2: class-mean gates"
    at = app_test(runs_dir, monkeypatch, "good", "Channel explorer", block="SE_3_2", channel="3")
    assert [at.selectbox[0].value, at.selectbox[1].value] == ["SE_3_2", 3]
    row = at.dataframe[0].value
    assert row[["block", "channel"]].values.tolist() == [["SE_3_2", 3]]
    assert at.query_params["block"] == "SE_3_2" and at.query_params["channel"] == "3"
    at.selectbox[1].set_value(5).run()  # a new choice is written back into the address
    assert at.query_params["channel"] == "5"
    at = app_test(runs_dir, monkeypatch, "good", "Classes", block="SE_2_3")
    assert at.selectbox[0].value == "SE_2_3"


def test_the_heatmap_draws_each_class_mean_and_a_click_opens_the_most_specific_channel(runs_dir):
    run = load_run(runs_dir / "good")
    block = "SE_3_2"
    table = run.class_means.query("block == @block")
    brute = table.pivot(index="class", columns="channel", values="mean").to_numpy()  # [K, C] from the table
    centred = brute - brute.mean(0)
    order = run.channels.query("block == @block").sort_values(["preferred_class", "eta2"], ascending=[True, False])
    h = dashboard_charts.heatmap(run, block, views.class_mean_arrays(run)[block][0], views.class_names(run), 3)
    per_column = -(-brute.shape[1] // 3)  # channels averaged into 3 columns
    starts = range(0, brute.shape[1], per_column)
    columns = [order["channel"].to_numpy()[a:a + per_column] for a in starts]
    expected = np.stack([centred[:, c].mean(1) for c in columns], 1)
    pixels = np.asarray(Image.open(io.BytesIO(h.image)).convert("RGBA"))
    colours = colormaps["RdBu_r"]((expected + h.limit) / (2 * h.limit), bytes=True)
    assert h.limit == pytest.approx(np.abs(expected).max())
    assert np.abs(pixels.astype(int) - colours.astype(int)).max() <= 1
    eta2 = run.channels.query("block == @block").set_index("channel")["eta2"]
    assert h.targets.drop_duplicates("x0")["channel"].tolist() == [int(eta2.loc[c].idxmax()) for c in columns]
    cells = h.targets.set_index(["klass", "x0"])["value"]  # every cell hovers with its value
    for k, name in enumerate(views.class_names(run)):
        np.testing.assert_allclose([cells.loc[(name, a)] for a in starts], expected[k], atol=1e-5)


def test_a_distribution_reads_only_its_classes_and_counts_as_the_statistics_do(runs_dir):
    run = load_run(runs_dir / "good")
    counts, edges = run.stats.histogram("SE_3_2")  # the whole histogram, through GateStats
    shown = views.gate_distribution(run, "SE_3_2", None, [3, 1])
    pooled, _ = views.pooled_histogram(counts.numpy()[[3, 1]], edges.numpy())
    np.testing.assert_allclose(shown["share"].to_numpy(), (pooled / pooled.sum(1, keepdims=True)).ravel())
    one, cells, e = views.gate_distribution(run, "SE_3_2", 2, [4]), counts.numpy()[4, 2], edges.numpy()[2]
    kept = np.r_[True, e[1:] > e[:-1], True]  # under- and overflow, the bins of positive width
    np.testing.assert_allclose(one["share"].to_numpy(), cells[kept] / cells.sum())


@pytest.mark.parametrize("name, message", [
    ("damaged", "is damaged"), ("old", "without se-analysis's format mark"), ("empty", "meta.json is missing"),
])
@pytest.mark.parametrize("page", PAGES)
def test_broken_runs_show_a_message_not_a_traceback(runs_dir, monkeypatch, name, message, page):
    at = app_test(runs_dir, monkeypatch, name, page)
    assert not at.exception, at.exception
    assert any(message in plain(e.value) for e in at.error), [e.value for e in at.error]


def page_strings(at) -> str:
    """Everything the page shows as text, Markdown, tables and charts included."""
    tables = [d.value.to_csv() for d in at.dataframe]
    return " ".join(markdown_texts(at) + [t.value for t in at.text] + [c.value for c in at.code] + tables
                    + [json.dumps(c) for c in charts(at)])


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("name", ["linked_meta", "linked_table"])
def test_a_file_linked_out_of_the_runs_folder_never_reaches_the_page(runs_dir, monkeypatch, name, page):
    at = app_test(runs_dir, monkeypatch, name, page)
    assert not at.exception, at.exception
    assert SECRET not in page_strings(at)
    assert any("link out of its run folder" in plain(e.value) for e in at.error), [e.value for e in at.error]


@pytest.mark.parametrize("page", PAGES)
def test_text_from_a_run_is_shown_literally_never_as_markdown(runs_dir, monkeypatch, page):
    at = app_test(runs_dir, monkeypatch, "crafted", page)
    assert not at.exception and not at.error, at.exception or [e.value for e in at.error]
    for text in markdown_texts(at):  # every <, [ and ! of a Markdown string is escaped: shown, not rendered
        assert not re.search(r"(?<!\\)[<\[!]", text), text
    if page == "Overview":
        assert [t.value for t in at.text][:2] == [CRAFTED, CRAFTED]


def test_a_rewritten_run_is_shown_fresh_without_restarting(runs_dir, monkeypatch, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs_dir / "good", root / "r")
    at = app_test(root, monkeypatch, "r", "Overview")
    assert at.text[0].value == "synthetic"
    stats = planted_stats(resnet_gates(tuple(range(4, 20))), 3, 20, config=StatsConfig(num_classes=3, reservoir=4))
    save_run(stats, root / "r", {"model": "rewritten"}, overwrite=True)
    at.run()
    assert not at.exception and not at.error
    assert at.text[0].value == "rewritten" and at.metric[1].value == "3"


def test_changing_a_view_reuses_the_loaded_run(runs_dir, monkeypatch):
    at = app_test(runs_dir, monkeypatch, "good", "Block explorer")
    selectbox(at, HEATMAP_BLOCK).set_value("SE_3_2")
    at.toggle[0].set_value(True)
    at.run()
    assert not at.exception and not at.error and len(at.image) == 2 and len(charts(at)) == 1


def test_the_profile_figure_is_drawn_on_the_scale_chosen_deviations_first(runs_dir, monkeypatch):
    drawn = []
    original = figures.class_profiles
    monkeypatch.setattr(figures, "class_profiles", lambda *a, **k: drawn.append(k["scale"]) or original(*a, **k))
    at = app_test(runs_dir, monkeypatch, "good", "Block explorer")
    box = selectbox(at, "scale")
    assert len(box.options) == len(figures.SCALES) and box.value == "deviation"  # options: the scales in words
    assert caption("profiles") in [c.value for c in at.caption]
    for scale, words in (("unit", "on 0..1"), ("data", "on their data's range")):
        box.set_value(scale).run()
        assert not at.exception and not at.error and drawn[-1] == scale
        texts = [c.value for c in at.caption]
        assert caption("profiles") not in texts and any(words in text for text in texts)


def with_band(src: Path, out: Path, low: float, high: float) -> pd.DataFrame:
    """A copy of a run whose untrained control was measured with several seeds: eta2_untrained (their
    largest) and eta2_untrained_low (their smallest) at `high` and `low` times eta2_mean."""
    run = load_run(src)
    blocks = run.blocks.assign(eta2_untrained=run.blocks["eta2_mean"] * high,
                               eta2_untrained_low=run.blocks["eta2_mean"] * low)
    meta = {k: v for k, v in run.document.items() if k not in ("version", "created", "command", "software", "stats")}
    write_run(run.stats, out, meta, {"blocks": blocks, "channels": run.channels, "class_means": run.class_means})
    return blocks


def test_compare_draws_each_runs_untrained_band_between_its_seeds(runs_dir, monkeypatch, tmp_path):
    root = tmp_path / "runs"
    bands = {"a": with_band(runs_dir / "good", root / "a", 0.2, 0.4), "b": with_band(runs_dir / "good", root / "b", 0.5, 0.9)}
    drawn = []
    original = figures.compare_curves
    monkeypatch.setattr(figures, "compare_curves", lambda *a, **k: drawn.append(original(*a, **k)) or drawn[-1])
    at = app_test(root, monkeypatch, "a", "Compare")
    assert not at.exception and not at.error
    assert at.multiselect[0].value == ["a", "b"] and selectbox(at, "metric").value == "eta2_mean"  # the metric with a band
    filled = [c for c in drawn[-1].axes[0].collections if c.get_paths()]  # fill_between: one band per run
    assert len(filled) == 2
    for band, blocks in zip(filled, bands.values()):
        y = band.get_paths()[0].vertices[:, 1]
        assert y.min() == pytest.approx(blocks["eta2_untrained_low"].min(), rel=1e-6)
        assert y.max() == pytest.approx(blocks["eta2_untrained"].max(), rel=1e-6)


def test_compare_draws_the_band_of_a_collected_runs_own_untrained_seeds(runs_dir, monkeypatch):
    needs(runs_dir, "controlled")
    seeds = sorted((runs_dir / "controlled" / "untrained").glob("seed_*"))
    eta2 = pd.concat([pd.read_parquet(seed / "blocks.parquet").set_index("block")["eta2_mean"] for seed in seeds], axis=1)
    assert len(seeds) == 3  # collect's default
    drawn = []
    original = figures.compare_curves
    monkeypatch.setattr(figures, "compare_curves", lambda *a, **k: drawn.append(original(*a, **k)) or drawn[-1])
    at = app_test(runs_dir, monkeypatch, "controlled", "Compare")
    at.multiselect[0].set_value(["controlled"]).run()
    assert not at.exception and not at.error and selectbox(at, "metric").value == "eta2_mean"
    [band] = [c for c in drawn[-1].axes[0].collections if c.get_paths()]  # fill_between
    y = band.get_paths()[0].vertices[:, 1]
    for low, high in zip(eta2.min(axis=1), eta2.max(axis=1)):  # each block's smallest and largest seed
        assert np.isclose(y, low, rtol=1e-6).any() and np.isclose(y, high, rtol=1e-6).any()
    assert y.min() == pytest.approx(eta2.to_numpy().min(), rel=1e-6) and y.max() == pytest.approx(eta2.to_numpy().max(), rel=1e-6)


def test_a_link_with_a_run_opens_that_run_and_the_address_follows_the_picker(runs_dir, monkeypatch):
    at = app_test(runs_dir, monkeypatch, "paper")
    assert at.sidebar.selectbox[0].value == "paper" and not at.error and at.header[0].value == "Overview"
    at.sidebar.selectbox[0].set_value("good")
    at.switch_page(PAGES["Classes"][0]).run()
    assert at.query_params["run"] == "good" and at.header[0].value == "Classes" and not at.error


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard_server(runs: Path):
    """`se-analysis dashboard` on a free port, as a user starts it; yields its address."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "analysis", "dashboard", "--runs", str(runs), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise AssertionError("the dashboard did not start") from None
                time.sleep(0.5)
        yield f"http://localhost:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def settled(page, heading: str) -> None:
    """Wait until the page shows `heading` and the app has finished its run."""
    page.get_by_role("heading", name=heading).wait_for(timeout=120_000)
    page.wait_for_function("() => !document.querySelector(\"[data-testid='stStatusWidget']\")", timeout=120_000)


def readme_screenshot(page, shot: Path) -> None:
    """The top of the page as a small PNG (256 colours) for the README."""
    page.screenshot(path=str(shot))
    Image.open(shot).convert("RGB").quantize(256).save(shot, optimize=True)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_the_whole_headline_table_is_in_view_in_a_1280_px_window(runs_dir, tmp_path):
    """Every headline column of a run with controls is drawn, and the table does not scroll sideways:
    the grid puts only the columns in view into its accessible table. The page is the README's
    picture: SE_ANALYSIS_DEMO=runs/demo (a run folder of `se-analysis demo`) shows that run, and
    SE_ANALYSIS_SCREENSHOTS=docs writes the picture there."""
    from playwright.sync_api import sync_playwright

    demo = os.environ.get("SE_ANALYSIS_DEMO")
    if demo is None:
        needs(runs_dir, "controlled")
    runs, run = (Path(demo).resolve().parent, Path(demo).name) if demo else (runs_dir, "controlled")
    expected = list(views.headline(load_run(runs / run)).columns)
    assert {"eta2_untrained", "shape_sep_untrained", "sat_high"} <= set(expected)  # the widest headline a run has
    with dashboard_server(runs) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(f"{url}/?run={run}", timeout=60_000)
        settled(page, "Overview")
        table = page.locator("[data-testid='stDataFrame']").first
        table.locator("[role='columnheader']").first.wait_for(state="attached", timeout=60_000)
        shown = [h.text_content().strip() for h in table.locator("[role='columnheader']").all()]
        scroller = table.locator(".dvn-scroller").evaluate("s => [s.scrollWidth, s.clientWidth]")
        page.wait_for_function("""() => [...document.querySelectorAll("[data-testid='stImage'] img")]
                                        .every(i => i.complete && i.naturalWidth > 500)""", timeout=60_000)
        shot = tmp_path / "dashboard_overview.png"
        readme_screenshot(page, shot)
        browser.close()
    assert shown == expected
    assert scroller[0] <= scroller[1], scroller
    assert 20_000 < shot.stat().st_size < 400_000
    artifacts = os.environ.get("SE_ANALYSIS_SCREENSHOTS")  # e.g. docs: the README's picture
    if artifacts:
        shutil.copy(shot, Path(artifacts) / "dashboard_overview.png")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_every_page_of_every_kind_of_run_and_the_links_in_a_real_browser(runs_dir):
    from playwright.sync_api import sync_playwright

    with dashboard_server(runs_dir) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(f"{url}/?run=damaged", timeout=60_000)
        page.get_by_text("This run cannot be shown").wait_for(timeout=120_000)
        page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").click()
        page.get_by_role("option", name="good", exact=True).click()
        page.get_by_text("Blocks", exact=True).wait_for(timeout=120_000)
        settled(page, "Overview")
        assert page.get_by_text("This run cannot be shown").count() == 0
        assert page.get_by_text("Deploy", exact=True).count() == 0  # a viewer's menu, not Streamlit's editor's
        options = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']")
        options.click()
        assert [o.inner_text() for o in page.get_by_role("option").all()] == listed(runs_dir)  # no control
        page.keyboard.press("Escape")
        for run in [r for r in RUNS if (runs_dir / r).exists()]:
            for title, (_, address) in PAGES.items():  # each page's own address opens it, on the run it names
                page.goto(f"{url}/{address}?run={run}", timeout=60_000)
                settled(page, title if title != "Compare" else "Compare runs")
                assert page.locator("[data-testid='stException']").count() == 0, (run, title)
                assert page.get_by_text("This run cannot be shown").count() == 0, (run, title)
                assert f"run={run}" in page.url, page.url
        # A row of the Overview's blocks table opens that block in the Block explorer.
        page.goto(f"{url}/?run=good", timeout=60_000)
        settled(page, "Overview")
        table = page.locator("[data-testid='stDataFrame']").first
        table.scroll_into_view_if_needed()
        box = table.bounding_box()
        page.mouse.click(box["x"] + 15, box["y"] + 35 + 17)  # the first row's block cell, below the header
        settled(page, "Block explorer")
        assert "/blocks" in page.url and "block=SE_2_1" in page.url, page.url
        # A click on a column of the heatmap opens its channel in the Channel explorer.
        chart = page.locator("[data-testid='stVegaLiteChart']").first
        chart.scroll_into_view_if_needed()
        box = chart.bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
        settled(page, "Channel explorer")
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(page.url).query))
        assert query["block"] == "SE_2_1" and query["channel"].isdigit(), page.url
        for name in ("linked_meta", "linked_table"):  # a run holding links out: an error, none of their content
            page.goto(f"{url}/?run={name}", timeout=60_000)
            page.get_by_text("link out of its run folder").wait_for(timeout=60_000)
            assert SECRET not in page.content()
        page.goto(f"{url}/?run=crafted", timeout=60_000)
        page.get_by_text("Blocks", exact=True).wait_for(timeout=60_000)
        assert page.get_by_text(CRAFTED, exact=True).count() >= 1  # shown literally, as text
        assert page.locator("img[src*='attacker'], a[href*='attacker'], strong:text-is('b')").count() == 0
        browser.close()
