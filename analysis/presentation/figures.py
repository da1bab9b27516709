"""Figures of a run, drawn with seaborn/matplotlib from analysis.presentation.views outputs.

Every function returns a matplotlib Figure and reads nothing itself, so the dashboard and the
reports draw the same pictures from the same numbers. Matrices too large for seaborn's heatmap
(1000 classes x 2048 channels) are drawn with imshow.

The figures are plain `Figure` objects, never pyplot's: nothing global holds them (they are
garbage collected like any object) and Streamlit's threads cannot draw into each other's. Importing
this module changes no backend and no style; the style is applied while each figure is built and drawn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib.figure import Figure

from analysis.measures.anova import null_band
from analysis.presentation.views import heatmap_matrix

MAX_TICK_LABELS = 40  # beyond this many classes or blocks, axis labels are thinned
# sns.set_theme(style="whitegrid", context="notebook") as a plain dict, so that nothing is set at import;
# text as text: a run's names (classes, blocks, runs) may hold `$`, which mathtext would parse (and fail on)
STYLE = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook"), "font.family": "sans-serif",
         "axes.prop_cycle": cycler(color=sns.color_palette("deep")), "text.parse_math": False}
# matplotlib reads its style from the process-wide rcParams both while a figure is built and while it
# is drawn ("C0", tick label sizes); the lock keeps two threads (Streamlit's sessions) from swapping
# them under each other or restoring the other's style. Re-entrant: a figure may draw while built.
_STYLE_LOCK = threading.RLock()
P = ParamSpec("P")


@contextmanager
def _style() -> Iterator[None]:
    with _STYLE_LOCK, matplotlib.rc_context(STYLE):
        yield


class StyledFigure(Figure):
    """A Figure that draws under STYLE wherever it is saved or shown (savefig, PdfPages, st.pyplot)."""

    def draw(self, renderer) -> None:
        with _style():
            super().draw(renderer)


def styled(build: Callable[P, Figure]) -> Callable[P, Figure]:
    """Build the figure under STYLE, leaving the caller's rcParams as they were."""
    @wraps(build)
    def styled_build(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with _style():
            return build(*args, **kwargs)
    return styled_build


def _block_axis(ax, blocks: list[str]) -> None:
    step = max(1, len(blocks) // MAX_TICK_LABELS)
    ax.set_xticks(range(0, len(blocks), step), blocks[::step], rotation=60, ha="right", fontsize=8)


def _has(blocks: pd.DataFrame, column: str) -> bool:
    """Whether the table has the column with any number in it (controls are NaN when not collected)."""
    return column in blocks and bool(blocks[column].notna().any())


def _onset_lines(ax, names: list[str], onsets: dict[str, str | None] | None) -> None:
    for i, (label, block) in enumerate((onsets or {}).items()):
        if block in names:
            ax.axvline(names.index(block), color=("C3", "C5")[i % 2], ls=("--", "-.")[i % 2], label=f"{label} {block}")


@styled
def depth_curve(blocks: pd.DataFrame, onsets: dict[str, str | None] | None = None) -> Figure:
    """Class-specificity per block with its CI, beside its controls (null band, permutation null,
    untrained network, squeeze input z) (left); probe accuracy beside its controls (right).
    `onsets`: label -> block, each drawn as a vertical line. Controls a run lacks are left out."""
    fig = StyledFigure(figsize=(12, 4), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    x = np.arange(len(blocks))
    names = blocks["block"].tolist()
    ax.fill_between(x, 0, null_band(blocks), color="0.85", label="null: 95% of one channel's eta2 without class effect")
    ax.plot(x, blocks["eta2_null"], ":", color="0.4", label="null mean (K-1)/(N-1)")
    if _has(blocks, "eta2_perm"):
        ax.plot(x, blocks["eta2_perm"], "x--", color="0.2", label="permutation null (shuffled labels)")
    ax.fill_between(x, blocks["eta2_ci_low"], blocks["eta2_ci_high"], color="C0", alpha=0.3, label="95% jackknife CI")
    ax.plot(x, blocks["eta2_mean"], "o-", color="C0", label="trained: mean eta2 over channels")
    if _has(blocks, "eta2_untrained"):
        ax.plot(x, blocks["eta2_untrained"], "s--", color="C1", label="untrained network")
    if _has(blocks, "eta2_z"):
        ax.plot(x, blocks["eta2_z"], "^:", color="C4", label="squeeze input z")
    ax2.plot(x, blocks["probe_acc"], "o-", color="C2", label="probe accuracy on gate vectors")
    for column, style, color, label in (("probe_perm", "x--", "0.2", "probe on permuted labels"),
                                        ("probe_untrained", "s--", "C1", "untrained network"),
                                        ("probe_z", "^:", "C4", "squeeze input z")):
        if _has(blocks, column):
            ax2.plot(x, blocks[column], style, color=color, label=label)
    ax2.plot(x, blocks["probe_chance"], ":", color="0.4", label="chance")
    for a in (ax, ax2):
        _onset_lines(a, names, onsets)
        _block_axis(a, names)
        a.set_ylim(0, 1.02)
        a.legend(fontsize=7, loc="upper left")
    ax.set_ylabel("eta2 (class share of gate variance)")
    ax2.set_ylabel("top-1 accuracy")
    ax.set_title("Class-specificity by depth")
    ax2.set_title("Class read out from the gates")
    return fig


@styled
def shape_curve(blocks: pd.DataFrame, onsets: dict[str, str | None] | None = None) -> Figure:
    """Shape against level by depth: shape_sep (class curves that differ beyond a per-class shift and
    scale of the common curve) and profile_sep, beside shape_sep of the untrained network."""
    fig = StyledFigure(figsize=(12, 3.8), layout="constrained")
    ax = fig.subplots()
    x, names = np.arange(len(blocks)), blocks["block"].tolist()
    for column, style, color, label in (("shape_sep", "o-", "C0", "trained: shape_sep"),
                                        ("profile_sep", "d:", "C2", "trained: profile_sep (shape and level)"),
                                        ("shape_sep_untrained", "s--", "C1", "untrained network: shape_sep")):
        if _has(blocks, column):
            ax.plot(x, blocks[column], style, color=color, label=label)
    _onset_lines(ax, names, onsets)
    _block_axis(ax, names)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("separation / spread of the common profile")
    ax.set_title("Class-specific shape by depth")
    ax.legend(fontsize=8, loc="upper left")
    return fig


@styled
def saturation_bars(blocks: pd.DataFrame) -> Figure:
    """Share of gates >= 0.9 and <= 0.1 per block, and the mean gate with its spread."""
    fig = StyledFigure(figsize=(12, 3.6), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    x, names = np.arange(len(blocks)), blocks["block"].tolist()
    ax.bar(x, blocks["sat_high"], color="C1", label=">= 0.9")
    ax.bar(x, blocks["sat_low"], bottom=blocks["sat_high"], color="C4", label="<= 0.1")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of gate values")
    ax.set_title("Saturation")
    ax2.errorbar(x, blocks["gate_mean"], yerr=blocks["gate_std"], fmt="o", color="C0", capsize=2)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("gate mean +- std")
    ax2.set_title("Gate level")
    for a in (ax, ax2):
        _block_axis(a, names)
    ax.legend(fontsize=8)
    return fig


def envelope(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, low, high): per run of consecutive channels, the channel index at the run's middle and the
    lowest and highest value; with no more than `bins` runs. A line drawn through low and high in
    turn looks, at one run per pixel, like the line through every value, at a fraction of the
    drawing time. values: [C] -> three arrays of length min(C, bins)."""
    width = -(-len(values) // bins)
    runs = np.arange(0, len(values), width)
    return runs + (np.minimum(runs + width, len(values)) - 1 - runs) / 2, np.minimum.reduceat(values, runs), \
        np.maximum.reduceat(values, runs)


@styled
def class_profiles(
    profiles: dict[str, tuple[np.ndarray, np.ndarray]], classes: list[int], class_names: list[str], spread: bool = False,
    max_points: int | None = None,
) -> Figure:
    """The SE paper's figure: class-mean gate per channel for chosen classes, with the all-class mean.

    `profiles[block] = (mean [K, C], std [K, C])`; with `spread`, each class line gets a band of
    +- one within-class standard deviation. With `max_points`, blocks of more channels are drawn
    from their envelope over max_points / 2 runs of channels (the dashboard's screen resolution),
    which keeps every peak and trough.
    """
    n = len(profiles)
    cols = min(n, 3)
    rows = -(-n // cols)
    # A fixed layout: constrained layout costs a third of the drawing time at 2048 channels.
    fig = StyledFigure(figsize=(5 * cols, 3.2 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    fig.subplots_adjust(left=0.06, right=0.98, top=1 - 0.35 / (3.2 * rows + 0.6), bottom=1.1 / (3.2 * rows + 0.6),
                        hspace=0.55, wspace=0.25)
    def line(ax, values: np.ndarray, **style) -> None:
        if max_points and len(values) > max_points:
            x, low, high = envelope(values, max_points // 2)
            ax.plot(np.repeat(x, 2), np.column_stack([low, high]).ravel(), **style)
        else:
            ax.plot(np.arange(len(values)), values, **style)

    def band(ax, low: np.ndarray, high: np.ndarray, **style) -> None:
        if max_points and len(low) > max_points:
            x, low, _ = envelope(low, max_points // 2)
            high = envelope(high, max_points // 2)[2]
        else:
            x = np.arange(len(low))
        ax.fill_between(x, low, high, **style)

    for ax, (block, (mean, std)) in zip(axes.flat, profiles.items()):
        for i, c in enumerate(classes):
            line(ax, mean[c], lw=0.8, color=f"C{i % 10}", label=class_names[c])
            if spread:
                band(ax, mean[c] - std[c], mean[c] + std[c], color=f"C{i % 10}", alpha=0.15, lw=0)
        line(ax, mean.mean(0), lw=1.2, color="black", label="all classes")
        ax.set_title(block)
        ax.set_ylim(0, 1)
        ax.set_xlabel("channel index")
        ax.set_ylabel("activation")
    for ax in axes.flat[n:]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8)
    return fig


@styled
def class_channel_heatmap(
    mean: np.ndarray, order: np.ndarray, class_names: list[str], block: str, max_columns: int | None = None
) -> Figure:
    """Class x channel map of class-mean gates minus the channel's all-class mean, channels by
    preferred class; with `max_columns`, neighbouring channels (same preferred class, mostly) are
    averaged in groups so that no more than max_columns columns are drawn (views.heatmap_matrix)."""
    centred, starts = heatmap_matrix(mean, order, max_columns)
    channels, group = len(order), int(starts[1] - starts[0]) if len(starts) > 1 else 1
    lim = float(np.abs(centred).max()) or 1.0
    k = len(class_names)
    fig = StyledFigure(figsize=(10, min(2 + 0.25 * k, 9)), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(centred, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="antialiased",
                      extent=(-0.5, channels - 0.5, k - 0.5, -0.5))  # x in channels, grouped or not
    fig.colorbar(image, ax=ax, label="class mean - all-class mean")
    if k <= MAX_TICK_LABELS:
        ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_ylabel("class")
    ax.set_xlabel("channel (ordered by preferred class)" + (f", mean of each {group}" if group > 1 else ""))
    ax.set_title(f"{block}: class-mean gates")
    ax.grid(False)
    return fig


@styled
def gate_distributions(dist: pd.DataFrame, title: str) -> Figure:
    """Per class, the density of gate values (views.gate_distribution: share / bin width, the bins
    being of unequal width) at each bin's centre, over the gate's own range (trained gates often
    vary by 1e-4..1e-2); the share outside the bins (under- and overflow, no width) in the legend.
    Plain lines: seaborn's lineplot regroups the frame and took half of this figure's time."""
    fig = StyledFigure(figsize=(8, 3.6), layout="constrained")
    ax = fig.subplots()
    for i, (_, rows) in enumerate(dist.groupby("class", sort=False)):
        inside = rows["density"].notna()
        outside = rows.loc[~inside, "share"].sum()
        label = rows["class_name"].iloc[0] + (f" ({outside:.1%} outside)" if outside > 0 else "")
        ax.plot(rows.loc[inside, "bin_center"], rows.loc[inside, "density"], lw=1, color=f"C{i % 10}", label=label)
    if dist["class"].nunique() <= 12:
        ax.legend(title="class", fontsize=8)
    ax.set_xlabel("gate value")
    ax.set_ylabel("density (share per unit of gate value)")
    ax.set_title(title)
    return fig


@styled
def similarity_matrix(sim: np.ndarray, class_names: list[str], block: str) -> Figure:
    """Correlation between the class-mean gate profiles of one block."""
    k = len(class_names)
    fig = StyledFigure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(sim, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="antialiased")
    fig.colorbar(image, ax=ax, label="correlation of class-mean profiles")
    if k <= MAX_TICK_LABELS:
        ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_title(f"{block}: class similarity")
    ax.grid(False)
    return fig


@styled
def compare_curves(table: pd.DataFrame, metric: str = "eta2_excess") -> Figure:
    """One line per run of a block metric against relative depth (views.compare)."""
    fig = StyledFigure(figsize=(9, 4), layout="constrained")
    ax = fig.subplots()
    sns.lineplot(table, x="rel_depth", y=metric, hue="run", marker="o", ax=ax)
    ax.set_xlabel("relative depth (block / number of blocks)")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by depth")
    return fig


@styled
def intervention_effects(rows: pd.DataFrame) -> Figure:
    """Top-1 change per block (or group of blocks) and intervention with its 95% interval (top), and,
    for single blocks, the block's class-specificity excess and saturated share (bottom): predicted
    against measured (views.intervention_rows; a group has no such prediction: one panel)."""
    predicted = bool(rows["eta2_excess"].notna().any())
    fig = StyledFigure(figsize=(12, 6.5 if predicted else 3.8), layout="constrained")
    axes = fig.subplots(2 if predicted else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    names = list(dict.fromkeys(rows["block"]))
    kinds = list(dict.fromkeys(rows["intervention"]))
    width = 0.8 / len(kinds)
    for i, kind in enumerate(kinds):
        r = rows[rows["intervention"] == kind]
        x = np.array([names.index(b) for b in r["block"]]) + (i - (len(kinds) - 1) / 2) * width
        errors = [r["change_pp"] - r["change_pp_ci_low"], r["change_pp_ci_high"] - r["change_pp"]]
        # ecolor: the "k" that sns.set_theme's colour codes made of bar()'s default
        ax.bar(x, r["change_pp"], width, yerr=errors, capsize=2, ecolor="0.1", color=f"C{i}", label=kind)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_ylabel("top-1 change (points)")
    ax.set_title(f"Replacing {'one block' if predicted else 'a group of blocks'}'s gates: "
                 "accuracy change with 95% bootstrap interval")
    ax.legend(fontsize=8, ncol=len(kinds))
    if predicted:
        first = rows.drop_duplicates("block")
        x = np.arange(len(names))
        ax2 = axes[1]
        ax2.plot(x, first["eta2_excess"], "o-", color="C0", label="eta2 excess over chance")
        ax2.plot(x, first["sat_high"] + first["sat_low"], "s--", color="C1", label="share of gates >= 0.9 or <= 0.1")
        ax2.set_ylim(0, 1.02)
        ax2.legend(fontsize=8, loc="upper left")
        ax2.set_title("What the statistics predicted")
    _block_axis(axes[-1], names)
    return fig


@styled
def attribution_depth(blocks: pd.DataFrame) -> Figure:
    """Class-specificity by depth, plain and weighted by each channel's mean |attribution|, and each
    block's share of all |attribution| (attribution_blocks table)."""
    fig = StyledFigure(figsize=(12, 3.8), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    x, names = np.arange(len(blocks)), blocks["block"].tolist()
    ax.plot(x, blocks["eta2_mean"], "o-", color="C0", label="mean eta2 over channels")
    ax.plot(x, blocks["eta2_weighted"], "s--", color="C3", label="attribution-weighted eta2")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Class-specific and used")
    ax2.bar(x, blocks["share_abs_attr"], color="C2")
    ax2.set_ylabel("share of |attribution|")
    ax2.set_title("Where the class logit's attribution goes")
    for a in (ax, ax2):
        _block_axis(a, names)
    return fig
