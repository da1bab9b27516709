"""Runs with a hostile meta.json or `$` in their names, beside good runs: each bad run says why in
one sentence on its own pages, and never breaks a page about another run (Compare opens them all)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from analysis.testing.planted import planted_stats, resnet_gates
from analysis.capture.stats import StatsConfig
from analysis.jobs import save_run

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
DOLLAR = r"price_$\frac{$"
WARNING = "2 of 4 classes have fewer than 5 images (class 0 1, class 1 3): their numbers are unreliable"
HOSTILE = {  # run folder: (what its meta.json becomes, what its pages say)
    "deep": (lambda meta: "[" * 100_000 + "]" * 100_000, "nests deeper than a run's meta.json may"),
    "typed": (lambda meta: json.dumps({**meta, "files": {"blocks.parquet": 5}}),
              "its 'files['blocks.parquet']' must be an object, not 5"),
    "outside": (lambda meta: json.dumps({**meta, "files": {"/etc/passwd": {"size": 1, "sha256": "0" * 64}}}),
                "its 'files' names \"/etc/passwd\", not a file inside the run folder"),
    "samples": (lambda meta: json.dumps({**meta, "stats": {**meta["stats"], "samples": -3}}),
                "its 'stats.samples' must be between 0 and"),
}


def plain(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    stats = planted_stats(resnet_gates(tuple(range(4, 20))), 4, 20, config=StatsConfig(num_classes=4, reservoir=4))
    save_run(stats, root / "good", {"model": "synthetic"})
    for name, (rewrite, _) in HOSTILE.items():
        shutil.copytree(root / "good", root / name)
        (root / name / "meta.json").write_text(rewrite(json.loads((root / "good" / "meta.json").read_text())))
    save_run(stats, root / "warned", {"model": "synthetic", "warnings": [WARNING]})
    stats.class_names = [DOLLAR, r"$x^2$", "plain", "a$b"]
    save_run(stats, root / DOLLAR, {"model": f"model {DOLLAR}", "data": {"spec": "synthetic:classes=4"}})
    return root


def app_test(runs_dir, monkeypatch, run: str, page: str = "screens/overview.py"):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SE_ANALYSIS_RUNS", str(runs_dir))
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.query_params["run"] = run
    at.run()
    if page != "screens/overview.py":
        at.switch_page(page).run()
    return at


def test_compare_of_a_good_run_renders_beside_hostile_runs(runs_dir, monkeypatch):
    at = app_test(runs_dir, monkeypatch, "good", "screens/compare.py")
    assert not at.exception and not at.error, at.exception or [e.value for e in at.error]
    (caption,) = [plain(c.value) for c in at.caption if "Not comparable" in c.value]
    assert all(name in caption for name in HOSTILE) and "good" not in caption
    assert set(at.dataframe[-1].value["run"]) == {"good", "warned", DOLLAR}  # every good run drawn and summarised


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_run_says_why_in_one_sentence(runs_dir, monkeypatch, name):
    at = app_test(runs_dir, monkeypatch, name)
    assert not at.exception, at.exception
    (error,) = [plain(e.value) for e in at.error]
    assert error.startswith("This run cannot be shown: ") and HOSTILE[name][1] in error and "\n" not in error


@pytest.mark.parametrize("page", ["screens/overview.py", "screens/blocks.py", "screens/classes.py",
                                  "screens/channels.py"])
def test_dollar_names_render_on_every_page_with_figures(runs_dir, monkeypatch, page):
    at = app_test(runs_dir, monkeypatch, DOLLAR, page)
    assert not at.exception and not at.error, at.exception or [e.value for e in at.error]
    assert len(at.image) >= 1


@pytest.mark.parametrize("page", ["screens/overview.py", "screens/blocks.py", "screens/channels.py", "screens/classes.py",
                                  "screens/compare.py", "screens/interventions.py"])
def test_the_runs_warnings_are_on_every_page(runs_dir, monkeypatch, page):
    at = app_test(runs_dir, monkeypatch, "warned", page)
    assert not at.exception, at.exception
    assert [plain(w.value) for w in at.warning if "This run warns" in w.value] == [f"This run warns: {WARNING}"]
