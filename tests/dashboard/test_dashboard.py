"""The Streamlit dashboard: every page on a good and a broken run (AppTest), and in a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest


from analysis.cli import main
from analysis.jobs import save_run
from analysis.runs.folder import load_run
from analysis.capture.stats import StatsConfig
from analysis.measures import schema
from analysis.presentation import views
from analysis.testing.planted import planted_stats, resnet_gates
from analysis.testing.runs import NEW_COLUMNS, measure_run, with_new_columns

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
# title: (page file relative to the app, url_path); the Overview is the default page, at /
PAGES = {"Overview": ("screens/overview.py", ""), "Block explorer": ("screens/blocks.py", "blocks"),
         "Channel explorer": ("screens/channels.py", "channels"), "Classes": ("screens/classes.py", "classes"),
         "Compare": ("screens/compare.py", "compare"), "Interventions": ("screens/interventions.py", "interventions")}
CHROMIUM = Path("/usr/bin/chromium")
SECRET = "SECRET-OUTSIDE-MODEL"  # the model name of a run outside the runs folder, linked from inside it
CRAFTED = "![x](http://attacker.example/x.png) <img src=http://attacker.example/y.png> [link](http://attacker.example) **b**"
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


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash")
    stats = planted_stats(resnet_gates(tuple(range(4, 20))), 5, 30, config=StatsConfig(num_classes=5, reservoir=4))
    save_run(stats, root / "good", {"model": "synthetic", "data": {"spec": "synthetic:classes=5"}})
    shutil.copytree(root / "good", root / "epochs" / "epoch_001")
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
    measure_run(root / "measured")
    return root


def app_test(runs_dir, monkeypatch, run: str | None = None, page: str | None = None):
    """The app after its first load, then (if given) with `run` picked and on `page`."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SE_ANALYSIS_RUNS", str(runs_dir))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    if run is not None:
        at.sidebar.selectbox[0].set_value(run)
    if page is not None:
        at.switch_page(PAGES[page][0])
    if run is not None or page is not None:
        at.run()
    return at


def test_runs_listed_are_inside_the_runs_folder(runs_dir, monkeypatch):
    at = app_test(runs_dir, monkeypatch)
    assert at.sidebar.selectbox[0].options == ["crafted", "damaged", "empty", "epochs/epoch_001", "good",
                                               "linked_meta", "linked_table", "measured", "new", "old"]


@pytest.mark.parametrize("run", ["good", "new"])
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_a_good_run(runs_dir, monkeypatch, page, run):
    at = app_test(runs_dir, monkeypatch, run, page)
    assert not at.exception, at.exception
    assert at.header[0].value == (page if page != "Compare" else "Compare runs")
    assert not at.error, [e.value for e in at.error]
    figures = {"Overview": 2, "Block explorer": 3, "Channel explorer": 1, "Classes": 1, "Compare": 0, "Interventions": 0}
    assert len(at.image) >= figures[page]
    if page == "Overview":
        assert [m.label for m in at.metric] == ["samples", "classes", "SE blocks", "accuracy", "onset (shape)",
                                                "onset (detectable)"]
        assert at.metric[0].value == "150"
        onset = load_run(runs_dir / run).document["onset"]
        shape, detectable = (onset["block"], onset["detectable"]) if "detectable" in onset else ("none", onset["block"])
        assert [plain(m.value) for m in at.metric[4:]] == [shape or "none", detectable or "none"]
        texts = " ".join(plain(t) for t in markdown_texts(at))
        assert schema.ONSETS["block"] in texts and schema.ONSETS["detectable"] in texts
        table = at.dataframe[0].value
        measured = set(views.present(load_run(runs_dir / run), NEW_COLUMNS))  # what this run has (controls may not)
        assert measured and measured <= set(table.columns)
        assert len(at.image) == (3 if "shape_sep" in measured else 2)  # the shape figure where shape_sep is measured
        warned = load_run(runs_dir / run).document.get("warnings", [])
        assert [plain(w.value) for w in at.warning] == [f"This run warns: {w}" for w in warned][:len(at.warning)]
        assert len(at.warning) == len(warned)
    if page == "Block explorer" and run == "new":  # the chosen (last) block's row, controls beside its measures
        row, last = at.dataframe[0].value, load_run(runs_dir / run).blocks.iloc[-1]
        assert row["block"].tolist() == [last["block"]]
        for column in ("shape_sep", "shape_sep_untrained", "eta2_perm", "probe_perm"):
            assert row[column].iloc[0] == last["depth"] + NEW_COLUMNS.index(column) / 100


def test_interventions_page_shows_measured_effects_and_attributions(runs_dir, monkeypatch):
    at = app_test(runs_dir, monkeypatch, "measured", "Interventions")
    assert not at.exception and not at.error and not at.info
    assert len(at.image) == 2  # effects per block beside the statistics; attribution-weighted specificity
    run = load_run(runs_dir / "measured")
    shown = [d.value for d in at.dataframe]
    assert shown[0].equals(run.table("interventions")) and shown[1].equals(run.table("attribution_blocks"))


@pytest.mark.parametrize("name, message", [
    ("damaged", "is damaged"), ("old", "without se-analysis's format mark"), ("empty", "meta.json is missing"),
])
@pytest.mark.parametrize("page", PAGES)
def test_broken_runs_show_a_message_not_a_traceback(runs_dir, monkeypatch, name, message, page):
    at = app_test(runs_dir, monkeypatch, name, page)
    assert not at.exception, at.exception
    assert any(message in plain(e.value) for e in at.error), [e.value for e in at.error]


def page_strings(at) -> str:
    """Everything the page shows as text, Markdown and tables included."""
    tables = [d.value.to_csv() for d in at.dataframe]
    return " ".join(markdown_texts(at) + [t.value for t in at.text] + [c.value for c in at.code] + tables)


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("name", ["linked_meta", "linked_table"])
def test_a_file_linked_out_of_the_runs_folder_never_reaches_the_page(runs_dir, monkeypatch, name, page):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SE_ANALYSIS_RUNS", str(runs_dir))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params["run"] = name
    at.run()
    if page != "Overview":
        at.switch_page(PAGES[page][0]).run()
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
    at.selectbox[0].set_value("SE_3_2")
    at.toggle[0].set_value(True)
    at.run()
    assert not at.exception and not at.error and len(at.image) == 3


def test_a_link_with_a_run_opens_that_run_and_the_address_follows_the_picker(runs_dir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SE_ANALYSIS_RUNS", str(runs_dir))
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params["run"] = "measured"
    at.run()
    assert at.sidebar.selectbox[0].value == "measured" and not at.error and at.header[0].value == "Overview"
    at.sidebar.selectbox[0].set_value("good")
    at.switch_page(PAGES["Classes"][0]).run()
    assert at.query_params["run"] == "good" and at.header[0].value == "Classes" and not at.error


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")
def test_overview_and_each_pages_link_in_a_real_browser(runs_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "analysis", "dashboard", "--runs", str(runs_dir), "--port", str(port)],
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
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(f"http://localhost:{port}/?run=damaged", timeout=60_000)
            page.get_by_text("Overview", exact=True).first.wait_for(timeout=60_000)
            # The damaged run's message shows, then pick the good run.
            page.get_by_text("This run cannot be shown").wait_for(timeout=60_000)
            page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").click()
            page.get_by_role("option", name="good").click()
            page.get_by_text("Blocks", exact=True).wait_for(timeout=60_000)  # the page's last element
            page.wait_for_function(
                """() => { const imgs = [...document.querySelectorAll("[data-testid='stImage'] img")];
                           return imgs.length >= 2 && imgs.every(i => i.complete && i.naturalWidth > 500); }""",
                timeout=60_000,
            )
            assert page.get_by_text("onset (shape)", exact=True).count() == 1
            assert page.get_by_text("This run cannot be shown").count() == 0
            shot = tmp_path / "overview.png"
            page.screenshot(path=str(shot), full_page=True)
            for title, (_, url) in PAGES.items():  # each page's own address opens it, on the run it names
                page.goto(f"http://localhost:{port}/{url}?run=epochs/epoch_001", timeout=60_000)
                heading = title if title != "Compare" else "Compare runs"
                page.get_by_role("heading", name=heading).wait_for(timeout=60_000)
                assert page.get_by_text("This run cannot be shown").count() == 0, title
                assert "run=epochs" in page.url, page.url
            for name in ("linked_meta", "linked_table"):  # a run holding links out: an error, none of their content
                page.goto(f"http://localhost:{port}/?run={name}", timeout=60_000)
                page.get_by_text("link out of its run folder").wait_for(timeout=60_000)
                assert SECRET not in page.content()
            page.goto(f"http://localhost:{port}/?run=crafted", timeout=60_000)
            page.get_by_text("Blocks", exact=True).wait_for(timeout=60_000)
            assert page.get_by_text(CRAFTED, exact=True).count() >= 1  # shown literally, as text
            assert page.locator("img[src*='attacker'], a[href*='attacker'], strong:text-is('b')").count() == 0
            browser.close()
        assert shot.stat().st_size > 20_000
        artifacts = os.environ.get("SE_ANALYSIS_SCREENSHOTS")
        if artifacts:
            shutil.copy(shot, Path(artifacts) / "dashboard_overview.png")
    finally:
        server.terminate()
        server.wait(timeout=30)
