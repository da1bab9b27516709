"""Batch reports: one self-contained HTML file per run, an index page comparing runs, PNG/SVG figures, PDF.

    se-analysis report runs/a runs/b --out reports [--pdf]

    reports/index.html               comparison table and overlaid depth curves (several runs)
    reports/a/report.html            figures embedded as data URIs: opens offline from the one file
    reports/a/figures/*.png, *.svg   the same figures, for papers
    reports/a/report.pdf             with --pdf
    reports/a/paper.html             the SE paper's study, for a run made by `se-analysis paper`

Each run's folder is written under a temporary name and renamed, so a failed report never leaves
a half-written one in place of an older one. A report replaces only a report folder (one holding
nothing but what `write_run_report` writes) and never writes into or over a run folder.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from tqdm import tqdm

from analysis.errors import OptionError
from analysis.files import check_creatable, check_replaceable, replacing
from analysis.measures.schema import ONSETS
from analysis.presentation import figures, paper_page, views
from analysis.presentation.html import data_uri, figure, html_page, table, text_list
from analysis.runs.folder import Run, is_run_folder, load_run

PAGE_CHARACTERS = 105  # characters of 9-point text in a line of an A4 page's text
REPORT_FILES = ("report.html", "report.pdf", "paper.html", "figures")  # all that a run's report folder holds


def is_report_folder(path: Path) -> bool:
    """Whether `path` holds only a report: report.html, report.pdf, paper.html and figures/ of PNG and SVG files."""
    names = {p.name for p in path.iterdir()}
    figures = list((path / "figures").iterdir()) if (path / "figures").is_dir() else []
    return ("report.html" in names and names <= set(REPORT_FILES)
            and all(p.is_file() and p.suffix in (".png", ".svg") for p in figures))


def check_report_folder(folder: Path) -> None:
    """OptionError unless `folder` may be written: absent, or an earlier report."""
    if is_run_folder(folder):
        raise OptionError(f"{folder} is a run folder, so a report never replaces it; choose another --out.")
    check_replaceable(folder, "a report folder", is_report_folder)


@dataclass
class Report:
    run: Run
    folder: Path
    summary: dict

    @property
    def html(self) -> Path:
        return self.folder / "report.html"


def summary_lines(s: dict) -> list[str]:
    """The report's text, stated from views.summary (the tests compare it with the run's tables)."""
    saturated = ", ".join(s["saturated"]) or "none"
    accuracy = f"{s['accuracy']:.2%}" if s["accuracy"] is not None else "not recorded"
    return [
        f"Model {s['model']} on {s['data']}: {s['samples']:,} samples, {s['classes']} classes, "
        f"{s['blocks']} SE blocks with {s['channels']:,} gate channels; test accuracy {accuracy}.",
        f"Onset block (shape): {s['onset'] or 'none'}, {ONSETS['block']} (rule: {s['onset_rule']}).",
        f"Onset block (detectable): {s['onset_detectable'] or 'none'}, {ONSETS['detectable']} "
        f"(rule: {s['onset_rule_detectable']}).",
        f"Most class-specific block: {s['most_specific']} (mean eta2 {s['most_specific_eta2']:.3f}); "
        f"least: {s['least_specific']} (mean eta2 {s['least_specific_eta2']:.3f}).",
        f"Chance levels: eta2 {s['eta2_null']:.4f} expected without class effect; "
        f"probe chance {s['probe_chance']:.3f}, best probe accuracy {s['probe_best']:.3f}"
        + (f" ({s['probe_best_block']}; on permuted labels {s['probe_best_perm']:.3f})."
           if s["probe_best_perm"] is not None else "."),
        f"Saturated blocks ({s['saturation_rule']}): {saturated}.",
        *(f"Warning from the run: {w}" for w in s["warnings"]),
    ]


def run_figures(run: Run) -> dict[str, Figure]:
    """The overview and block-explorer figures of one run, with the views' default choices, and the
    interventions and attributions figures where the run has those tables."""
    names = views.class_names(run)
    means = views.class_mean_arrays(run)
    blocks = views.default_blocks(run)
    classes = views.spread_out(views.present_classes(run), 4)
    focus = views.summary(run)["most_specific"]
    focus_means, focus_names = views.present_means(run, means[focus][0])  # the classes with samples
    onsets = {o["label"]: o["block"] for o in views.onsets(run)}
    found = {
        "depth": figures.depth_curve(run.blocks, onsets),
        **({"shape": figures.shape_curve(run.blocks, onsets)} if views.present(run, ("shape_sep",)) else {}),
        "saturation": figures.saturation_bars(run.blocks),
        "profiles": figures.class_profiles({b: means[b] for b in blocks}, classes, names),
        "profiles_spread": figures.class_profiles({b: means[b] for b in blocks}, classes, names, spread=True),
        "heatmap": figures.class_channel_heatmap(focus_means, views.preferred_order(run, focus), focus_names, focus),
        "distributions": figures.gate_distributions(views.gate_distribution(run, focus, classes=classes),
                                                    f"{focus} (all channels)"),
        "similarity": figures.similarity_matrix(views.class_similarity(focus_means), focus_names, focus),
    }
    interventions = views.block_interventions(run)
    if not interventions.empty:
        found["interventions"] = figures.intervention_effects(interventions)
    if run.has_table("attribution_blocks"):
        found["attributions"] = figures.attribution_depth(run.table("attribution_blocks"))
    return found


def _text_page(pdf: PdfPages, title: str, lines: list[str]) -> None:
    """A page of text. Wrapped here, not by matplotlib (wrap=True), which measures a line holding two
    `$` as mathtext even with parse_math off, and fails on a run's names."""
    fig = Figure(figsize=(8.27, 11.69))
    fig.text(0.08, 0.95, title, fontsize=14, weight="bold", va="top", parse_math=False)
    fig.text(0.08, 0.90, "\n\n".join(textwrap.fill(line, PAGE_CHARACTERS) for line in lines), fontsize=9, va="top",
             parse_math=False)
    pdf.savefig(fig)


def write_run_report(run: Run, folder: Path, pdf: bool = False) -> Report:
    """Write one run's report folder (atomically replacing an older report, never anything else)."""
    check_report_folder(folder)
    summary = views.summary(run)
    lines = summary_lines(summary)
    with replacing(folder) as tmp:
        (tmp / "figures").mkdir(parents=True)
        figs = run_figures(run)
        sections = []
        for name, fig in figs.items():
            fig.savefig(tmp / "figures" / f"{name}.png", dpi=150)
            fig.savefig(tmp / "figures" / f"{name}.svg")
            sections.append(figure(name, fig))
        extra = ""
        if run.has_table("interventions"):
            extra = f"<h2>Interventions</h2>{table(run.table('interventions'))}"
        if run.has_table("attribution_blocks"):
            extra += f"<h2>Attributions</h2>{table(run.table('attribution_blocks'))}"
        if run.has_table("paper"):
            (tmp / paper_page.PAGE).write_text(paper_page.page_html(run))
            extra += f"<h2>The SE paper's study</h2><p><a href='{paper_page.PAGE}'>Role of Excitation (Figs. 6-7)</a></p>"
        body = (
            f"<h1>SE gate report: {html.escape(run.path.name)}</h1>"
            f"{text_list(lines)}"
            f"{''.join(sections)}<h2>Blocks</h2>{table(run.blocks[views.present(run, views.BLOCK_COLUMNS)])}{extra}"
            f"<p><small>run folder {html.escape(str(run.path))}; created {html.escape(run.meta.created)}; "
            f"software {html.escape(str(run.meta.software))}</small></p>"
        )
        (tmp / "report.html").write_text(html_page(f"SE gate report: {run.path.name}", body))
        if pdf:
            with PdfPages(tmp / "report.pdf") as document:
                _text_page(document, f"SE gate report: {run.path.name}", lines)
                for fig in figs.values():
                    document.savefig(fig)
    return Report(run, folder, summary)


def write_index(reports: list[Report], out: Path) -> Path:
    """index.html: a comparison table and overlaid depth curves, linking each run's report."""
    rules = ("onset_rule", "onset_rule_detectable")
    rows = pd.DataFrame([{"report": r.folder.name, **{k: v for k, v in r.summary.items() if k not in rules}}
                         for r in reports])
    rows["saturated"] = rows["saturated"].map(lambda b: ", ".join(b) or "none")
    rows["warnings"] = rows["warnings"].map(len)
    links = "".join(f"<li><a href='{html.escape(r.folder.name)}/report.html'>{html.escape(r.folder.name)}</a>"
                    + (f" (<a href='{html.escape(r.folder.name)}/{paper_page.PAGE}'>the SE paper's study</a>)"
                       if r.run.has_table("paper") else "") + "</li>" for r in reports)
    curves = {}
    for metric in ("eta2_excess", "probe_acc"):
        fig = figures.compare_curves(views.compare({r.folder.name: r.run for r in reports}), metric)
        curves[metric] = f"<img alt='{metric}' src='{data_uri(fig)}'>"
    body = f"<h1>SE gate reports</h1><ul>{links}</ul><h2>Comparison</h2>{table(rows)}{''.join(curves.values())}"
    index = out / "index.html"
    with replacing(index) as tmp:
        tmp.write_text(html_page("SE gate reports", body))
    return index


def unique_names(paths: list[Path]) -> list[str]:
    """Report folder names: the run folder's name, made unique with its parent's where two collide."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}_{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def write_reports(runs: Iterable[str | Path], out: str | Path, pdf: bool = False, progress: bool = True) -> list[Report]:
    """Reports for every run (all runs are opened and verified, and every place a report goes is
    checked, first: a bad one fails before anything is written). `out` is never a run folder or
    inside one."""
    opened = [load_run(path, verify=True) for path in runs]
    out = check_creatable(out)
    inside = next((p for p in (out.absolute(), *out.absolute().parents) if is_run_folder(p)), None)
    if inside is not None:
        raise OptionError(f"--out {out} is {'a' if inside == out.absolute() else 'inside a'} run folder ({inside}); "
                          "reports go to a folder of their own.")
    names = unique_names([r.path.resolve() for r in opened])
    for name in names:
        check_report_folder(out / name)
    out.mkdir(parents=True, exist_ok=True)
    reports = [write_run_report(run, out / name, pdf)
               for run, name in tqdm(list(zip(opened, names)), desc="reports", unit="run", disable=not progress)]
    if len(reports) > 1:
        write_index(reports, out)
    return reports
