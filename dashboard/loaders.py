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
from pathlib import Path

import streamlit as st
from matplotlib.figure import Figure

from analysis.errors import AnalysisError, RunFolderError
from analysis.presentation import figures, views
from analysis.runs.folder import Run, load_run

SCREEN_POINTS = 1000  # points per line, columns per heatmap: about two per pixel of a panel at 90 dpi
RUNS_ENV = "SE_ANALYSIS_RUNS"
RUN_KEY = "run"  # the sidebar's run picker, in session state and in the page's URL (?run=...)


def runs_root() -> Path:
    return Path(os.environ.get(RUNS_ENV, "runs")).resolve()


def run_folders(root: Path) -> list[str]:
    """Run folders under root (up to two levels deep), as paths relative to root.

    Folders without meta.json are listed too (unless they group runs), so a broken run says why.
    A folder that is a link out of root is not listed (one holding such links is: `stamp` says why).
    """
    if not root.is_dir():
        return []
    found = {p.parent for pattern in ("*/meta.json", "*/*/meta.json") for p in root.glob(pattern)}
    found |= {p for p in root.iterdir() if p.is_dir() and not any(f.parent == p for f in found)}
    return sorted(str(p.relative_to(root)) for p in found
                  if not p.name.startswith(".") and p.resolve().is_relative_to(root))


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


@st.cache_data(max_entries=256, show_spinner=False)
def figure(kind: str, path: str, files: tuple, key: tuple) -> bytes:
    """One figure of one run as PNG bytes; `key` holds the view's choices (blocks, classes, ...)."""
    run = open_run(path, files)
    names = views.class_names(run)
    onsets = {o["label"]: o["block"] for o in views.onsets(run)}
    if kind == "depth":
        return png(figures.depth_curve(run.blocks, onsets))
    if kind == "shape":
        return png(figures.shape_curve(run.blocks, onsets))
    if kind == "saturation":
        return png(figures.saturation_bars(run.blocks))
    means = class_means(path, files)
    if kind == "profiles":
        blocks, classes, spread = key
        return png(figures.class_profiles({b: means[b] for b in blocks}, list(classes), names, spread,
                                          max_points=SCREEN_POINTS))
    if kind == "heatmap":
        (block,) = key
        mean, shown = views.present_means(run, means[block][0])
        return png(figures.class_channel_heatmap(mean, views.preferred_order(run, block), shown, block,
                                                 max_columns=SCREEN_POINTS))
    if kind == "distribution":
        block, channel, classes = key
        title = f"{block}" + (f" channel {channel}" if channel is not None else " (all channels)")
        return png(figures.gate_distributions(views.gate_distribution(run, block, channel, list(classes)), title))
    if kind == "similarity":
        (block,) = key
        mean, shown = views.present_means(run, means[block][0])
        return png(figures.similarity_matrix(views.class_similarity(mean), shown, block))
    raise ValueError(kind)


def block_explorer_defaults(run: Run) -> list[tuple[str, tuple]]:
    """(kind, key) of each figure the Block explorer shows with its default choices."""
    last = views.block_names(run)[-1]
    classes = tuple(views.spread_out(views.present_classes(run), 4))
    return [("profiles", (tuple(views.default_blocks(run)), classes, False)), ("heatmap", (last,)),
            ("distribution", (last, None, classes))]


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
    return run


def selected_run() -> Run:
    """The run picked in the sidebar (already opened by the app's first_load)."""
    path = inside(runs_root(), st.session_state[RUN_KEY])
    return open_run(str(path), stamp(path))
