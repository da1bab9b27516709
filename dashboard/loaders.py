"""The dashboard's cached loaders: the run folders it may read, opened runs, class means, figures.

Loaded runs and rendered figures are cached, keyed by the run folder and its meta.json time, so
after the first load of a run each interaction only slices arrays and reuses images. The app reads
run folders inside the runs folder it was given (from $SE_ANALYSIS_RUNS) and nothing else, except
the data set a run names, and only when the user asks to see its top images.
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


def token(path: Path) -> float:
    """Changes when the run is rewritten, so caches never serve an old run."""
    meta = path / "meta.json"
    return meta.stat().st_mtime if meta.exists() else 0.0


@st.cache_resource(max_entries=8)
def open_run(path: str, _token: float) -> Run:
    return load_run(path)


@st.cache_resource(max_entries=4)
def class_means(path: str, _token: float) -> dict:
    return views.class_mean_arrays(open_run(path, _token))


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


@st.cache_data(max_entries=256, show_spinner=False)
def figure(kind: str, path: str, _token: float, key: tuple) -> bytes:
    """One figure of one run as PNG bytes; `key` holds the view's choices (blocks, classes, ...)."""
    run = open_run(path, _token)
    names = views.class_names(run)
    if kind == "depth":
        return png(figures.depth_curve(run.blocks, run.onset))
    if kind == "saturation":
        return png(figures.saturation(run.blocks))
    means = class_means(path, _token)
    if kind == "profiles":
        blocks, classes, spread = key
        return png(figures.class_profiles({b: means[b] for b in blocks}, list(classes), names, spread,
                                          max_points=SCREEN_POINTS))
    if kind == "heatmap":
        (block,) = key
        return png(figures.class_channel_heatmap(means[block][0], views.preferred_order(run, block), names, block,
                                                 max_columns=SCREEN_POINTS))
    if kind == "distribution":
        block, channel, classes = key
        title = f"{block}" + (f" channel {channel}" if channel is not None else " (all channels)")
        return png(figures.gate_distributions(views.gate_distribution(run, block, channel, list(classes)), title))
    if kind == "similarity":
        (block,) = key
        return png(figures.similarity_matrix(views.class_similarity(means[block][0]), names, block))
    raise ValueError(kind)


def block_explorer_defaults(run: Run) -> list[tuple[str, tuple]]:
    """(kind, key) of each figure the Block explorer shows with its default choices."""
    last = views.block_names(run)[-1]
    classes = tuple(views.spread_out(list(range(len(views.class_names(run)))), 4))
    return [("profiles", (tuple(views.default_blocks(run)), classes, False)), ("heatmap", (last,)),
            ("distribution", (last, None, classes))]


def first_load(path: Path) -> Run:
    """Open the run and read what every page needs, so that a damaged run says so on every page and
    the Block explorer, drawn here with its default choices, then opens at once."""
    run = open_run(str(path), token(path))
    if run.blocks.empty:
        raise RunFolderError(f"{path} has no SE blocks.")
    class_means(str(path), token(path))  # the one slow read
    for kind, key in block_explorer_defaults(run):
        figure(kind, str(path), token(path), key)
    return run


def selected_run() -> Run:
    """The run picked in the sidebar (already opened by the app's first_load)."""
    path = inside(runs_root(), st.session_state[RUN_KEY])
    return open_run(str(path), token(path))
