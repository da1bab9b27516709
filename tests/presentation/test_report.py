"""Batch reports: self-contained HTML, figure files, PDF, index page, and a summary that matches the run."""

from __future__ import annotations

import html
import re
import shutil

import pypdf
import pytest

from analysis.presentation import views
from analysis.cli import main
from analysis.measures import schema
from analysis.presentation.captions import caption
from analysis.presentation.numbers import formatted
from analysis.presentation.report import summary_lines, write_reports
from analysis.jobs import save_run
from analysis.runs.folder import load_run
from analysis.capture.stats import StatsConfig
from analysis.testing.planted import planted_stats, resnet_gates
from analysis.testing.runs import NEW_COLUMNS, measure_run, with_new_columns

FIGURES = ("depth", "shape", "saturation", "profiles", "profiles_spread", "heatmap", "distributions", "similarity")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    gates = resnet_gates(tuple(range(4, 20)))
    out = []
    for i, specificity in enumerate((0.15, 0.3)):
        stats = planted_stats(gates, 5, 30, specificity=specificity, config=StatsConfig(num_classes=5, reservoir=4), seed=i)
        out.append(save_run(stats, root / f"run{i}", {"model": f"synthetic{i}"}))
    return out


def test_reports_are_self_contained_with_figures_and_index(runs, tmp_path):
    reports = write_reports([r.path for r in runs], tmp_path / "out", pdf=True, progress=False)
    assert [r.folder.name for r in reports] == ["run0", "run1"]
    for report in reports:
        page = report.html.read_text()
        # Nothing outside the file: every src is a data URI, no stylesheet or script links, no URLs.
        assert re.findall(r"src=['\"]([^'\"]*)", page) and all(
            s.startswith("data:image/png;base64,") for s in re.findall(r"src=['\"]([^'\"]*)", page))
        assert "<link" not in page and "<script" not in page and "http://" not in page and "https://" not in page
        assert len(re.findall(r"<img ", page)) == len(FIGURES)
        for name in FIGURES:
            assert (report.folder / "figures" / f"{name}.png").stat().st_size > 1000
            assert (report.folder / "figures" / f"{name}.svg").read_text().lstrip().startswith("<?xml")
        assert (report.folder / "report.pdf").read_bytes().startswith(b"%PDF")
    index = (tmp_path / "out" / "index.html").read_text()
    assert "run0/report.html" in index and "run1/report.html" in index and index.count("<img ") == 2
    assert not list((tmp_path / "out").glob(".*tmp*"))


def test_interventions_and_attributions_get_figures_and_tables(tmp_path):
    measure_run(tmp_path / "measured")
    run = load_run(tmp_path / "measured")
    [report] = write_reports([run.path], tmp_path / "out", progress=False)
    page = report.html.read_text()
    for name in ("interventions", "attributions"):
        assert (report.folder / "figures" / f"{name}.png").stat().st_size > 0 and f"alt='{name}'" in page
    assert "<h2>Interventions</h2>" in page and "<h2>Attributions</h2>" in page
    # every single-block change of the table is in the page, in points as the figure draws it
    rows = views.block_interventions(run)
    assert len(rows) == 4 * len(run.blocks) and rows["depth"].is_monotonic_increasing
    table = run.table("interventions").set_index(["group", "intervention"])
    for _, row in rows.iterrows():
        assert row["change_pp"] == pytest.approx(100 * table.loc[(row["block"], row["intervention"]), "acc_change"])
    assert all(f"<td>{cell}</td>" in page for cell in formatted(run.table("interventions"))["acc"])


def test_summary_numbers_match_the_run_tables(runs, tmp_path):
    (report,) = write_reports([runs[1].path], tmp_path, progress=False)
    page = report.html.read_text()
    b = runs[1].blocks.set_index("block")
    top, low = b["eta2_excess"].idxmax(), b["eta2_excess"].idxmin()
    assert f"Most class-specific block: {top} (mean eta2 {b.loc[top, 'eta2_mean']:.3f})" in page
    assert f"least: {low} (mean eta2 {b.loc[low, 'eta2_mean']:.3f})" in page
    notions = runs[1].meta.onset.notions  # planted without an untrained control
    assert "onset (shape): undetermined (no untrained control)." in page
    assert "onset (magnitude): undetermined (no untrained control)." in page
    detectable = notions["detectable"]
    assert f"onset (detectable): {detectable.block or 'no block'}, from which block on" in page
    if detectable.block:  # the line's numbers are the block's
        row = b.loc[detectable.block]
        assert f"eta2_mean {row['eta2_mean']:#.3g} against chance {row['eta2_null']:#.3g}" in page
    assert f"eta2 {b['eta2_null'].iloc[0]:.4f} expected without class effect" in page
    assert f"best probe accuracy {b['probe_acc'].max():.3f}" in page
    assert "5 classes, 16 SE blocks" in page and f"{b['channels'].sum():,} gate channels" in page
    assert all(html.escape(line) in page for line in summary_lines(views.summary(runs[1])))


def test_saturated_blocks_are_named(runs):
    s = views.summary(runs[0]) | {"saturated": ["SE_5_2", "SE_5_3"]}
    assert "Saturated blocks (share of gates >= 0.9 at least 50%): SE_5_2, SE_5_3." in summary_lines(s)


def test_bad_run_writes_nothing_and_cli_says_one_sentence(runs, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(runs[0].path, broken)
    (broken / "blocks.parquet").unlink()
    out = tmp_path / "out"
    assert main(["report", str(runs[0].path), str(broken), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "incomplete: blocks.parquet missing" in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_rewriting_a_report_replaces_it(runs, tmp_path, capsys):
    out = tmp_path / "reports"
    assert main(["report", str(runs[0].path), "--out", str(out), "--quiet"]) == 0
    (out / "run0" / "figures" / "stale.png").write_bytes(b"old")  # a report folder holds only its own kinds of file
    assert main(["report", str(runs[0].path), "--out", str(out), "--quiet"]) == 0
    assert not (out / "run0" / "figures" / "stale.png").exists() and (out / "run0" / "report.html").exists()
    assert "report " in capsys.readouterr().out


def test_same_named_runs_get_distinct_report_folders(runs, tmp_path):
    other = tmp_path / "elsewhere" / "run0"
    shutil.copytree(runs[0].path, other)
    reports = write_reports([runs[0].path, other], tmp_path / "out", progress=False)
    assert len({r.folder for r in reports}) == 2 and all(r.html.exists() for r in reports)


def test_a_run_with_controls_reports_both_onsets_the_controls_and_its_warnings(runs, tmp_path):
    with_new_columns(runs[1].path, tmp_path / "new")
    (report,) = write_reports([tmp_path / "new"], tmp_path / "out", progress=False)
    page = report.html.read_text()
    onset = load_run(tmp_path / "new").document["onset"]
    for key, label in (("block", "shape"), ("detectable", "detectable")):  # the block in the answer, the rule folded
        assert f"<li>onset ({label}): {onset[key]}. " in page
        rule = onset["rule" if key == "block" else "rule_detectable"]
        assert html.escape(f"{schema.ONSETS[key]}. Rule: {rule}.") in re.search(r"<details>.*?</details>", page, re.S)[0]
    row = load_run(tmp_path / "new").blocks.set_index("block").loc["SE_4_2"]  # the shape line's numbers are its
    assert f"shape_sep {row['shape_sep']:#.3g}" in page and f"against {row['shape_sep_untrained']:#.3g} untrained" in page
    assert "Warning from the run: class 4 has only 3 samples" in page
    every = re.search(r"<h2>Every column</h2>(.*?)</thead>", page, re.S).group(1)
    assert all(re.search(f">{c}</th>", every) for c in NEW_COLUMNS)
    assert (report.folder / "figures" / "shape.png").stat().st_size > 1000 and "alt='shape'" in page


def test_the_pdf_is_an_a4_document_that_carries_the_tables_and_captions(runs, tmp_path):
    (report,) = write_reports([runs[1].path], tmp_path, pdf=True, progress=False)
    pages = pypdf.PdfReader(report.folder / "report.pdf").pages
    assert len(pages) > 2 and all((round(float(p.mediabox.width) / 72 * 25.4), round(float(p.mediabox.height) / 72 * 25.4))
                                  == (210, 297) for p in pages)  # A4 in mm
    first, text = pages[0].extract_text(), "\n".join(p.extract_text() for p in pages)
    headline = formatted(views.headline(runs[1]))
    table = first[first.index(" ".join(headline.columns)):]  # the blocks table on the first page, as text
    for row in headline.itertuples(index=False):
        assert re.search(r"\s+".join(map(re.escape, row)), table), row
    words = " ".join(text.split())
    assert all(" ".join(caption(kind).split()[:12]) in words for kind in FIGURES)
    assert all(column in text for column in views.present(runs[1], views.BLOCK_COLUMNS))  # every column, further on
