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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from tqdm import tqdm

from analysis.errors import OptionError
from analysis.experiments.cascade import flag_matrix
from analysis.files import check_creatable, check_replaceable, replacing
from analysis.measures import schema
from analysis.presentation import figures, paper_page, views
from analysis.presentation.answer import onset_lines, onset_rules
from analysis.presentation.captions import TITLES, caption
from analysis.presentation.html import details, figure, html_page, png, table, text_list
from analysis.presentation.pdf import Document
from analysis.runs.folder import Run, is_run_folder, load_run

TABLE_NOTE = ("Each measure beside its controls; a column's meaning shows when its name is hovered, and in the "
              "README's 'Table columns'. Every column of the blocks table is further below.")
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
    """The report's text around the answer, stated from views.summary (the tests compare it with the run's tables)."""
    saturated = ", ".join(s["saturated"]) or "none"
    accuracy = f"{s['accuracy']:.2%}" if s["accuracy"] is not None else "not recorded"
    return [
        f"Model {s['model']} on {s['data']}: {s['samples']:,} samples, {s['classes']} classes, "
        f"{s['blocks']} SE blocks with {s['channels']:,} gate channels; test accuracy {accuracy}.",
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
    interventions and attributions figures where the run has those tables; named as captions.CAPTIONS."""
    names = views.class_names(run)
    means = views.class_mean_arrays(run)
    drawn = {b: means[b] for b in views.default_blocks(run)}
    classes = views.spread_out(views.present_classes(run), 4)
    focus = views.summary(run)["most_specific"]
    focus_means, focus_names = views.present_means(run, means[focus][0])  # the classes with samples
    onsets = {o["label"]: o["block"] for o in views.onsets(run)}
    found = {
        "depth": figures.depth_curve(run.blocks, onsets),
        **({"shape": figures.shape_curve(run.blocks, onsets)} if views.present(run, ("shape_sep",)) else {}),
        "profiles": figures.class_profiles(drawn, classes, names),
        "profiles_spread": figures.class_profiles(drawn, classes, names, spread=True),
        "saturation": figures.saturation_bars(run.blocks),
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


@dataclass
class Content:
    """What a run's report says, in order, for both the HTML page and the PDF."""

    title: str
    lead: str  # what was measured
    answer: list[str]  # one line per onset
    notes: list[str]  # the rest of the summary
    headline: pd.DataFrame
    figures: dict[str, bytes]  # kind -> PNG
    every_column: pd.DataFrame
    rules: list[tuple[str, str]]
    extra: dict[str, pd.DataFrame]  # heading -> table (interventions, attributions)
    footer: str  # where the run is, when it was made, with what software


CASCADE_HEADING = ("Cascading randomisation: does each measure move when its block is re-drawn? (unmoved: "
                   "no more than re-drawing it with another seed moves it; `se-analysis cascade`)")


def content(run: Run, images: dict[str, bytes]) -> Content:
    """The report of a run around its figures' PNGs."""
    lines = summary_lines(views.summary(run))
    extra = {heading: run.table(name) for heading, name in (("Interventions", "interventions"),
                                                           ("Attributions", "attribution_blocks")) if run.has_table(name)}
    if run.has_table("cascade_flags"):
        extra[CASCADE_HEADING] = flag_matrix(run.table("cascade_flags"))
    footer = f"run folder {views.shown_path(run.path)}; created {run.meta.created}; software {run.meta.software}"
    return Content(f"SE gate report: {run.path.name}", lines[0], onset_lines(run), lines[1:], views.headline(run),
                   images, run.blocks[views.present(run, views.BLOCK_COLUMNS)], onset_rules(run), extra, footer)


def page_html(c: Content, paper: bool) -> str:
    docs = {col.name: col.doc for col in schema.columns("blocks")}
    sections = "".join(figure(TITLES[kind], image, caption(kind), alt=kind) for kind, image in c.figures.items())
    extra = "".join(f"<h2>{heading}</h2>{table(frame)}" for heading, frame in c.extra.items())
    if paper:
        extra += f"<h2>The SE paper's study</h2><p><a href='{paper_page.PAGE}'>Role of Excitation (Figs. 6-7)</a></p>"
    rules = "".join(f"<p><b>{html.escape(label)}</b>: {html.escape(rule)}</p>" for label, rule in c.rules)
    return html_page(c.title, (
        f"<h1>{html.escape(c.title)}</h1><p>{html.escape(c.lead)}</p>"
        f"<h2>Answer</h2>{text_list(c.answer, 'answer')}{details('The onset rules in full', rules)}"
        f"{text_list(c.notes)}<h2>Blocks</h2>{table(c.headline, docs)}<p><small>{TABLE_NOTE}</small></p>"
        f"<h2>Figures</h2>{sections}"
        f"<h2>Every column</h2>{details('the blocks table, every column', table(c.every_column, docs))}{extra}"
        f"<p><small>{html.escape(c.footer)}</small></p>"
    ))


def write_pdf(c: Content, path: Path) -> None:
    """The report as an A4 document: the answer and the blocks table first, then each figure with its caption."""
    with Document(path) as doc:
        doc.heading(c.title, size=16)
        doc.paragraph(c.lead)
        doc.heading("Answer")
        for line in c.answer:
            doc.paragraph(line)
        for line in c.notes:
            doc.paragraph(line)
        doc.heading("Blocks")
        doc.table(c.headline)
        doc.paragraph(TABLE_NOTE, size=8, color="0.3")
        for kind, image in c.figures.items():
            doc.figure(image, caption(kind), TITLES[kind])
        doc.heading("Every column of the blocks table")
        doc.table(c.every_column)
        for heading, frame in c.extra.items():
            doc.heading(heading)
            doc.table(frame)
        doc.heading("The onset rules in full")
        for label, rule in c.rules:
            doc.paragraph(f"{label}: {rule}", size=8)


def write_run_report(run: Run, folder: Path, pdf: bool = False) -> Report:
    """Write one run's report folder (atomically replacing an older report, never anything else)."""
    check_report_folder(folder)
    summary = views.summary(run)
    with replacing(folder) as tmp:
        (tmp / "figures").mkdir(parents=True)
        images = {}
        for name, fig in run_figures(run).items():
            images[name] = png(fig)
            (tmp / "figures" / f"{name}.png").write_bytes(images[name])
            fig.savefig(tmp / "figures" / f"{name}.svg")
        c = content(run, images)
        if run.has_table("paper"):
            (tmp / paper_page.PAGE).write_text(paper_page.page_html(run))
        (tmp / "report.html").write_text(page_html(c, run.has_table("paper")))
        if pdf:
            write_pdf(c, tmp / "report.pdf")
    return Report(run, folder, summary)


def write_index(reports: list[Report], out: Path) -> Path:
    """index.html: one row per run (its answer and what it measured) and overlaid depth curves, linking each report."""
    rows = pd.DataFrame([{
        "report": r.folder.name, "model": s["model"], "data": s["data"], "samples": s["samples"],
        "test accuracy": s["accuracy"], "onset (shape)": s["onset"] or "none",
        "onset (detectable)": s["onset_detectable"] or "none", "most class-specific block": s["most_specific"],
        "best probe accuracy": s["probe_best"], "saturated blocks": ", ".join(s["saturated"]) or "none",
        "warnings": len(s["warnings"]),
    } for r, s in ((r, r.summary) for r in reports)])
    links = "".join(f"<li><a href='{html.escape(r.folder.name)}/report.html'>{html.escape(r.folder.name)}</a>"
                    + (f" (<a href='{html.escape(r.folder.name)}/{paper_page.PAGE}'>the SE paper's study</a>)"
                       if r.run.has_table("paper") else "") + "</li>" for r in reports)
    stacked = views.compare({r.folder.name: r.run for r in reports})
    curves = "".join(figure(f"{metric} by depth", png(figures.compare_curves(stacked, metric)), caption("compare"),
                            alt=metric) for metric in ("eta2_excess", "probe_acc"))
    body = f"<h1>SE gate reports</h1><ul>{links}</ul><h2>Comparison</h2>{table(rows)}{curves}"
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
