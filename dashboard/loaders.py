"""The dashboard's cached loaders: the run folders it may read, opened runs, class means, figures.

Loaded runs and rendered figures are cached, keyed by the run folder and the time and size of each
of its files (`stamp`), so after the first load of a run each interaction only slices arrays and
reuses images, and a rewritten run is read afresh. The app reads run folders inside the runs folder
it was given (from $SE_ANALYSIS_RUNS), never through a link leaving a run folder, and nothing else,
except the data set a run names, and only when the user asks to see its top images.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pandas as pd
import streamlit as st
from matplotlib.figure import Figure

from analysis.errors import AnalysisError, RunFolderError
from analysis.experiments.trajectory import onset_table, trajectory_table
from analysis.measures.similarity import similarity
from analysis.presentation import figures, views
from analysis.runs.folder import Run, load_run
from analysis.runs.matching import check_same_data
from dashboard import charts

SCREEN_POINTS = 1000  # points per line, columns per heatmap: about two per pixel of a panel at 90 dpi
RUNS_ENV = "SE_ANALYSIS_RUNS"
RUN_KEY = "run"  # the sidebar's run picker, in session state and in the page's URL (?run=...)


def runs_root() -> Path:
    return Path(os.environ.get(RUNS_ENV, "runs")).resolve()


def run_folders(root: Path) -> list[str]:
    """Run folders under root (up to two levels deep), as paths relative to root.

    Folders without meta.json are listed too (unless they group runs), so a broken run says why.
    A folder inside a run folder is part of that run (a control such as RUN/untrained), never a run
    of its own. A folder that is a link out of root is not listed (one holding such links is: `stamp`
    says why).
    """
    if not root.is_dir():
        return []
    found = {p.parent for pattern in ("*/meta.json", "*/*/meta.json") for p in root.glob(pattern)}
    found = {p for p in found if p.parent == root or not (p.parent / "meta.json").exists()}
    found |= {p for p in root.iterdir() if p.is_dir() and not any(f.parent == p for f in found)}
    return sorted(str(p.relative_to(root)) for p in found
                  if not p.name.startswith(".") and p.resolve().is_relative_to(root))


def training_order(runs: dict[str, Run]) -> list[str]:
    """Run names by folder, then by the epoch of their checkpoint where recorded (an epoch snapshot's
    meta.json has it), then by name with numbers in numeric order (epoch_2 before epoch_10)."""
    def key(name: str) -> tuple:
        checkpoint = runs[name].meta.checkpoint
        epoch = checkpoint.epoch if checkpoint else None
        parts = [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name)]
        folder, _, _ = name.rpartition("/")
        return folder, epoch if isinstance(epoch, int) else float("inf"), parts
    return sorted(runs, key=key)


def inside(root: Path, name: str) -> Path:
    """The run folder `name` under root; refuses anything that resolves outside it."""
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise AnalysisError(f"{name} is outside the runs folder {root}.")
    return path


def stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, mtime_ns, size) of every file of the run folder, sub-folders (controls) included.

    The caches are keyed on it, so a rewritten run, or one that gained a table, is read afresh. It
    also refuses a run that holds a link leaving the run folder (a meta.json or a table linked to a
    file elsewhere), before anything of it is read: every file the dashboard opens is one listed here.
    """
    files = []
    for file in sorted(path.rglob("*")):
        if not file.resolve().is_relative_to(path):
            raise RunFolderError(f"{file.relative_to(path)} in this run is a link out of its run folder; "
                                 "the dashboard reads nothing through it.")
        if file.is_file():
            info = file.stat()
            files.append((str(file.relative_to(path)), info.st_mtime_ns, info.st_size))
    return tuple(files)


@st.cache_resource(max_entries=8)
def open_run(path: str, files: tuple) -> Run:
    """The opened run, its files checked against the sizes and sha256 sums in its meta.json (once per
    change: `files`, its stamp, is a hashed argument, so a change of any file reopens it)."""
    return load_run(path, verify=True)


@st.cache_resource(max_entries=4)
def class_means(path: str, files: tuple) -> dict:
    return views.class_mean_arrays(open_run(path, files))


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _draw(kind: str, path: str, files: tuple, key: tuple) -> Figure:
    """The matplotlib figure `kind` of one run (figure's docstring)."""
    run = open_run(path, files)
    onsets = {o["label"]: o["block"] for o in views.onsets(run)}
    if kind == "depth":
        return figures.depth_curve(run.blocks, onsets)
    if kind == "shape":
        return figures.shape_curve(run.blocks, onsets)
    if kind == "saturation":
        return figures.saturation_bars(run.blocks)
    if kind == "interventions":  # key: ("block",) the single blocks, ("group",) stages, sets and all
        rows = views.block_interventions(run) if key == ("block",) else views.intervention_rows(run)
        return figures.intervention_effects(rows if key == ("block",) else rows[rows["kind"] != "block"])
    if kind == "attributions":
        return figures.attribution_depth(run.table("attribution_blocks"))
    means = class_means(path, files)
    if kind == "profiles":
        blocks, classes, spread, scale = key
        return figures.class_profiles({b: means[b] for b in blocks}, list(classes), views.class_names(run), spread,
                                      max_points=SCREEN_POINTS, scale=scale)
    if kind == "distribution":
        block, channel, classes = key
        title = f"{block}" + (f" channel {channel}" if channel is not None else " (all channels)")
        return figures.gate_distributions(views.gate_distribution(run, block, channel, list(classes)), title)
    if kind == "similarity":
        (block,) = key
        mean, shown = views.present_means(run, means[block][0])
        return figures.similarity_matrix(views.class_similarity(mean), shown, block)
    raise ValueError(kind)


@st.cache_data(max_entries=256, show_spinner=False)
def figure(kind: str, path: str, files: tuple, key: tuple) -> bytes:
    """One figure of one run as PNG bytes: depth, shape, saturation, interventions, attributions,
    profiles, distribution or similarity; `key` holds the view's choices (blocks, classes, ...)."""
    return png(_draw(kind, path, files, key))


@st.cache_data(max_entries=64, show_spinner=False)
def heatmap(path: str, files: tuple, block: str) -> charts.Heatmap:
    """The class x channel heatmap of one block, for charts.heatmap_chart."""
    run = open_run(path, files)
    mean, shown = views.present_means(run, class_means(path, files)[block][0])
    return charts.heatmap(run, block, mean, shown, SCREEN_POINTS)


@st.cache_data(max_entries=32, show_spinner=False)
def compare_figure(runs: tuple[tuple[str, str, tuple], ...], metric: str) -> bytes:
    """The Compare page's figure of the runs (name, path, stamp), in that order."""
    return png(figures.compare_curves(views.compare({name: open_run(path, files) for name, path, files in runs}), metric))


@st.cache_data(max_entries=8, show_spinner=False)
def trajectory(runs: tuple[tuple[str, tuple], ...]) -> tuple[pd.DataFrame, bytes]:
    """The onsets by epoch of snapshot runs (path, stamp) in training order, and the trajectory figure."""
    table = trajectory_table([open_run(path, files) for path, files in runs])
    return onset_table(table), png(figures.trajectory_figure(table))


@st.cache_data(max_entries=16, show_spinner=False)
def cka(path: str, files: tuple, other: str, other_files: tuple) -> pd.DataFrame:
    """Linear CKA between every block of two runs of the same data: rows the first run's blocks."""
    first, second = open_run(path, files), open_run(other, other_files)
    check_same_data(first, second)
    table = similarity(first.stats, second.stats)
    matrix = table.pivot(index="block_a", columns="block_b", values="cka")
    return matrix.loc[table["block_a"].unique(), table["block_b"].unique()]


def default_block(run: Run) -> str:
    """The block a page shows first: the shape onset, where gating becomes class-specific, else the last."""
    onset = views.summary(run)["onset"]
    return onset if onset in views.block_names(run) else views.block_names(run)[-1]


def block_explorer_defaults(run: Run) -> list[tuple[str, tuple]]:
    """(kind, key) of each figure the Block explorer shows with its default choices."""
    classes = tuple(views.spread_out(views.present_classes(run), 4))
    return [("profiles", (tuple(views.default_blocks(run)), classes, False, figures.SCALES[0])),
            ("distribution", (default_block(run), None, classes))]


def first_load(path: Path) -> Run:
    """Open the run and read what every page needs, so that a damaged run says so on every page and
    the Block explorer, drawn here with its default choices, then opens at once."""
    files = stamp(path)
    run = open_run(str(path), files)
    if run.blocks.empty:
        raise RunFolderError(f"{path} has no SE blocks.")
    views.onsets(run)  # a run without its onset entry says so on every page
    class_means(str(path), files)  # the one slow read
    for kind, key in block_explorer_defaults(run):
        figure(kind, str(path), files, key)
    heatmap(str(path), files, default_block(run))
    return run


def selected_run() -> Run:
    """The run picked in the sidebar (already opened by the app's first_load)."""
    path = inside(runs_root(), st.session_state[RUN_KEY])
    return open_run(str(path), stamp(path))
