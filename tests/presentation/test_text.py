"""The text a reader sees: one line per onset with the run's own numbers, the terminal's table within
120 columns and named as the README's column reference, numbers to their precision."""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from analysis.capture.stats import StatsConfig
from analysis.cli import TERMINAL, format_blocks
from analysis.experiments.paper import NUMBER_COLUMNS
from analysis.jobs import save_run
from analysis.presentation import views
from analysis.presentation.answer import notion_line, onset_lines, onset_rules
from analysis.presentation.numbers import MISSING, decimals, formatted
from analysis.runs.folder import load_run
from analysis.testing.planted import planted_stats, resnet_gates
from analysis.testing.runs import with_new_columns

README = Path(__file__).resolve().parents[2] / "README.md"
sys.path.insert(0, str(README.parent / "scripts"))
from readme_columns import END, START  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(a run without controls, the same run with every control column and both onsets set)."""
    root = tmp_path_factory.mktemp("text")
    stats = planted_stats(resnet_gates(tuple(range(4, 20))), 5, 30, specificity=0.3,
                          config=StatsConfig(num_classes=5, reservoir=4), seed=1)
    plain = save_run(stats, root / "plain", {"model": str(root / "checkpoints" / "model")})
    with_new_columns(plain.path, root / "controls")
    return plain, load_run(root / "controls")


def reference() -> set[str]:
    """The column names of the README's generated column reference."""
    section = README.read_text().split(START)[1].split(END)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.M))


def header(printed: str) -> list[str]:
    """The column names of the printed table (its line that starts with `block`)."""
    return next(line.split() for line in printed.splitlines() if line.split()[:1] == ["block"])


def test_every_column_a_table_shows_is_in_the_readme_reference(runs):
    names = reference()
    for columns in (views.HEADLINE_COLUMNS, views.BLOCK_COLUMNS, NUMBER_COLUMNS):
        assert set(columns) <= names, set(columns) - names
    assert {"class_mean", "others_mean", "lift", "preferring", "share", "chance"} <= names  # the Classes page's
    for run in runs:
        printed = header(format_blocks(run))
        assert printed == list(views.headline(run).columns) and set(printed) <= names


def test_the_terminal_table_fits_120_columns(runs):
    _, controls = runs
    printed = format_blocks(controls)
    assert max(len(line) for line in printed.splitlines()) <= TERMINAL == 120
    assert {"eta2_untrained", "shape_sep_untrained"} <= set(header(printed))


def test_one_line_per_onset_with_the_runs_numbers(runs):
    plain, controls = runs
    b = controls.blocks.set_index("block")
    shape, detectable = onset_lines(controls)
    row = b.loc["SE_4_2"]  # with_new_columns sets the shape onset at SE_4_2, the detectable one at SE_2_3
    assert shape.startswith("onset (shape): SE_4_2. ") and "Not checked" not in shape
    assert (f"shape_sep {row['shape_sep']:#.3g} (95% interval {row['shape_sep_ci_low']:#.3g}-"
            f"{row['shape_sep_ci_high']:#.3g}) against {row['shape_sep_untrained']:#.3g} untrained and "
            f"{row['shape_sep_perm_max']:#.3g} with shuffled labels") in shape
    row = b.loc["SE_2_3"]
    assert detectable.startswith("onset (detectable): SE_2_3. ")
    assert f"eta2 {row['eta2_mean']:#.3g}" in detectable and f"{row['frac_significant']:.0%} of its channels" in detectable
    lines = onset_lines(plain)  # no untrained control: said, not passed over
    assert [line.split(":")[0] for line in lines] == ["onset (detectable)", "onset (magnitude)", "onset (shape)"]
    assert lines[1:] == [f"onset ({n}): undetermined (no untrained control)." for n in ("magnitude", "shape")]
    rules, notions = onset_rules(plain), plain.meta.onset.notions  # per notion, with how its certainty is counted
    assert [label for label, _ in rules] == [line.split(":")[0] for line in lines]
    assert rules[0][1].endswith(f"Rule: {plain.meta.onset.rule_detectable}; {notions['detectable'].certainty_rule}.")


def test_an_onset_that_no_block_reaches_says_none(runs):
    plain, _ = runs
    onset = dataclasses.replace(plain.meta.onset, block=None, detectable=None, notions={})  # a run before issue 23
    shape, detectable = onset_lines(dataclasses.replace(plain, meta=dataclasses.replace(plain.meta, onset=onset)))
    assert shape.startswith("onset (shape): none: ") and detectable.startswith("onset (detectable): none: ")


def test_numbers_are_rounded_to_their_precision():
    assert decimals(pd.Series([9 / 9999, 1e-4])) == 6 and decimals(pd.Series([0.371, 0.885])) == 3
    assert decimals(pd.Series([1.433, 0.4])) == 2 and decimals(pd.Series([0.0, np.nan])) == 0
    cells = formatted(pd.DataFrame({"block": ["SE_2_1", "SE_2_2"], "eta2_null": [9 / 9999, math.nan],
                                    "channels": [16, 32], "accuracy": [None, 0.9], "saturated": ["SE_5_2", None]}))
    assert cells.to_dict("list") == {"block": ["SE_2_1", "SE_2_2"], "eta2_null": ["0.000900", MISSING],
                                     "channels": ["16", "32"], "accuracy": [MISSING, "0.900"],
                                     "saturated": ["SE_5_2", MISSING]}


def test_paths_are_shown_relative_to_the_working_directory(runs, monkeypatch):
    plain, _ = runs
    monkeypatch.chdir(plain.path.parent)
    assert views.summary(plain)["model"] == str(Path("checkpoints") / "model")
    assert format_blocks(plain).startswith("run plain: model checkpoints/model")
    assert views.shown_path("timm:seresnet50") == "timm:seresnet50" and views.shown_path("/elsewhere/x") == "/elsewhere/x"
    assert views.shown_path("http://x/y") == "http://x/y"  # a spec that is no path keeps its //


def test_a_notion_reads_as_one_line_with_its_certainty():
    """The record answer's runs write (runs.meta NotionRecord), field by field."""
    def notion(**fields):
        base = dict(status="found", block="SE_4_2", reason=None, certainty=0.97, draws=600, resamples=200,
                    control_seeds=(1, 2, 3), statistic="shape_sep", control="untrained", value=0.504,
                    null_value=0.0224, band=(0.05, 0.08), meaning="class curves that are not shifted copies")
        return SimpleNamespace(**(base | fields))

    assert notion_line("shape", notion()) == (
        "onset (shape): SE_4_2, from which block on: class curves that are not shifted copies. shape_sep 0.504 "
        "against shuffled labels 0.0224 and untrained 0.0500-0.0800; certainty 97% of 600 draws (200 resamples x "
        "untrained seeds 1, 2, 3).")
    undetermined = notion_line("shape", notion(status="undetermined", block=None, reason="no untrained control"))
    assert undetermined == "onset (shape): undetermined (no untrained control)."
    nothing = notion_line("magnitude", notion(status="none", block=None, certainty=0.9, value=None, band=None))
    assert nothing.startswith("onset (magnitude): no block, from which block on: class curves") and "90% of 600 draws" in nothing
    assert "none" not in nothing + undetermined
    detectable = notion(certainty=None, band=None, control_seeds=(), statistic="eta2_mean", control="chance")
    assert notion_line("detectable", detectable).endswith(
        "eta2_mean 0.504 against chance 0.0224; certainty not estimated (200 resamples).")
