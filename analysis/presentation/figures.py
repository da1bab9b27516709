"""Figures of a run, drawn with seaborn/matplotlib from analysis.presentation.views outputs.

Every function returns a matplotlib Figure and reads nothing itself, so the dashboard and the
reports draw the same pictures from the same numbers. Matrices too large for seaborn's heatmap
(1000 classes x 2048 channels) are drawn with imshow.

The figures are plain `Figure` objects, never pyplot's: nothing global holds them (they are
garbage collected like any object) and Streamlit's threads cannot draw into each other's. Importing
this module changes no backend and no style; the style is applied while each figure is built and drawn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from analysis.measures.anova import null_band
from analysis.measures.saturation import GATE_HIGH, GATE_LOW
from analysis.presentation.captions import MEASURES
from analysis.presentation.profile_figure import SCALES, Scale, class_profiles, envelope  # noqa: F401 - re-exported
from analysis.presentation.style import StyledFigure, class_styles, styled
from analysis.presentation.views import heatmap_matrix

MAX_TICK_LABELS = 40  # beyond this many classes or blocks, axis labels are thinned


def _block_axis(ax, blocks: list[str]) -> None:
    step = max(1, len(blocks) // MAX_TICK_LABELS)
    ax.set_xticks(range(0, len(blocks), step), blocks[::step], rotation=60, ha="right", fontsize=8)


def _has(blocks: pd.DataFrame, column: str | None) -> bool:
    """Whether the table has the column with any number in it (controls are NaN when not collected)."""
    return column in blocks and bool(blocks[column].notna().any())


def _side_by_side(fig: Figure, n: int) -> list:
    """n axes side by side, each in a subfigure of its own so that each can hold a legend below it."""
    return [panel.subplots() for panel in fig.subfigures(1, n)]


def _legend_below(ax, ncol: int = 2) -> None:
    """The axes' legend under it, in its (sub)figure, where it covers no point."""
    ax.get_figure(root=False).legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=ncol,
                                     fontsize=7, frameon=False)


def _onset_lines(ax, names: list[str], onsets: dict[str, str | None] | None) -> None:
    for i, (label, block) in enumerate((onsets or {}).items()):
        if block in names:
            ax.axvline(names.index(block), color=("C3", "C5")[i % 2], ls=("--", "-.")[i % 2], label=f"{label} {block}")


@styled
def depth_curve(blocks: pd.DataFrame, onsets: dict[str, str | None] | None = None) -> Figure:
    """Class-specificity per block with its CI, beside its controls (null band, permutation null,
    untrained network, squeeze input z) (left); probe accuracy beside its controls (right).
    `onsets`: label -> block, each drawn as a vertical line. Controls a run lacks are left out."""
    fig = StyledFigure(figsize=(12, 5.2), layout="constrained")
    ax, ax2 = _side_by_side(fig, 2)
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
        ax.plot(x, blocks["eta2_z"], "^:", color="C2", label="squeeze input z")
    ax2.plot(x, blocks["probe_acc"], "o-", color="C0", label="trained: probe accuracy on gate vectors")
    for column, style, color, label in (("probe_perm", "x--", "0.2", "probe on permuted labels"),
                                        ("probe_untrained", "s--", "C1", "untrained network"),
                                        ("probe_z", "^:", "C2", "squeeze input z")):
        if _has(blocks, column):
            ax2.plot(x, blocks[column], style, color=color, label=label)
    ax2.plot(x, blocks["probe_chance"], ":", color="0.4", label="chance")
    for a in (ax, ax2):
        _onset_lines(a, names, onsets)
        _block_axis(a, names)
        a.set_ylim(0, 1.02)
        _legend_below(a)
    ax.set_ylabel("class share of gate variance\n(eta2)")
    ax2.set_ylabel("images whose class is read\nfrom the gates (share)")
    ax.set_title("Class-specificity by depth")
    ax2.set_title("Class read out from the gates")
    return fig


@styled
def shape_curve(blocks: pd.DataFrame, onsets: dict[str, str | None] | None = None) -> Figure:
    """Shape against level by depth: shape_sep (class curves that differ beyond a per-class shift and
    scale of the common curve) with its interval, beside the shape notion's controls (the shuffled
    labels' 95th percentile, or their largest value in runs before it; the untrained seeds' band) and
    profile_sep (shape and level)."""
    fig = StyledFigure(figsize=(12, 4.4), layout="constrained")
    ax = fig.subplots()
    x, names = np.arange(len(blocks)), blocks["block"].tolist()
    if _has(blocks, "shape_sep_ci_low"):
        ax.fill_between(x, blocks["shape_sep_ci_low"], blocks["shape_sep_ci_high"], color="C0", alpha=0.3,
                        label="95% interval")
    if _has(blocks, "shape_sep_untrained_low"):
        ax.fill_between(x, blocks["shape_sep_untrained_low"], blocks["shape_sep_untrained"], color="C1", alpha=0.2,
                        lw=0, label="untrained seeds: smallest to largest")
    null = "shape_sep_perm_q95" if _has(blocks, "shape_sep_perm_q95") else "shape_sep_perm_max"
    null_label = "shuffled labels: 95th percentile" if null == "shape_sep_perm_q95" else "shuffled labels: largest"
    for column, style, color, label in (("shape_sep", "o-", "C0", "trained: shape_sep"),
                                        ("profile_sep", "d:", "C8", "trained: profile_sep (shape and level)"),
                                        (null, "x--", "0.2", null_label),
                                        ("shape_sep_untrained", "s--", "C1", "untrained network: shape_sep")):
        if _has(blocks, column):
            ax.plot(x, blocks[column], style, color=color, label=label)
    _onset_lines(ax, names, onsets)
    _block_axis(ax, names)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("class curves' differences\n(in SDs of the block's gates)")
    ax.set_title("Class-specific shape by depth")
    _legend_below(ax, ncol=3)
    return fig


@styled
def saturation_bars(blocks: pd.DataFrame) -> Figure:
    """Share of gates >= GATE_HIGH and <= GATE_LOW per block, on a scale that fits the shares (a panel
    without any says so), and the mean gate with its spread."""
    fig = StyledFigure(figsize=(12, 4), layout="constrained")
    ax, ax2 = _side_by_side(fig, 2)
    x, names = np.arange(len(blocks)), blocks["block"].tolist()
    ax.bar(x, blocks["sat_high"], color="C1", label=f"gate >= {GATE_HIGH} (nearly open)")
    ax.bar(x, blocks["sat_low"], bottom=blocks["sat_high"], color="C4", label=f"gate <= {GATE_LOW} (nearly closed)")
    top = float((blocks["sat_high"] + blocks["sat_low"]).max())
    if top > 0:
        ax.set_ylim(0, min(1.0, 1.15 * top))
        _legend_below(ax)
    else:
        ax.set_ylim(0, 1)
        ax.text(0.5, 0.5, f"no gate value reaches {GATE_HIGH} or {GATE_LOW} in any block:\nno block is saturated",
                transform=ax.transAxes, ha="center", va="center", fontsize=10, color="0.3")
    ax.set_ylabel("share of gate values")
    ax.set_title("Saturated gates")
    ax2.errorbar(x, blocks["gate_mean"], yerr=blocks["gate_std"], fmt="o", color="C0", capsize=2)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("gate value: mean +- std")
    ax2.set_title("Gate level")
    for a in (ax, ax2):
        _block_axis(a, names)
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
    """Correlation between the class-mean gate profiles of one block, on a colour scale from the
    lowest correlation between two classes to 1 (trained gates' profiles correlate at 0.5-1, where a
    -1..1 scale shows one colour)."""
    k = len(class_names)
    fig = StyledFigure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    off_diagonal = sim[~np.eye(k, dtype=bool)]
    low = float(np.nanmin(off_diagonal)) if off_diagonal.size else 0.0
    image = ax.imshow(sim, cmap="viridis", vmin=min(low, 0.999), vmax=1, interpolation="antialiased")
    fig.colorbar(image, ax=ax, label="correlation of two classes' gate profiles")
    if k <= MAX_TICK_LABELS:
        ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_title(f"{block}: how alike the classes are gated")
    ax.grid(False)
    return fig


# a measure's untrained-network control in the blocks table; with answer's several seeds, "{control}_low" too
CONTROLS = {"eta2_mean": "eta2_untrained", "shape_sep": "shape_sep_untrained", "probe_acc": "probe_untrained",
            "class_mod": "class_mod_untrained"}


@styled
def compare_curves(table: pd.DataFrame, metric: str = "eta2_excess") -> Figure:
    """One line per run of a block metric by depth (views.compare), the runs in the table's order: at
    the block names where every run has the same blocks (epoch snapshots of one training), else at
    relative depth. Each run's untrained control (CONTROLS) beside it, light, in its colour: a band
    between the seeds' smallest and largest where the table has both, else a dashed line."""
    fig = StyledFigure(figsize=(9, 4.6), layout="constrained")
    ax = fig.subplots()
    runs = list(dict.fromkeys(table["run"]))
    blocks = [table.loc[table["run"] == r, "block"].tolist() for r in runs]
    same = all(b == blocks[0] for b in blocks)
    styles = class_styles(range(len(runs)))
    control = CONTROLS.get(metric)
    for i, run in enumerate(runs):
        rows = table[table["run"] == run]
        x = np.arange(len(rows)) if same else rows["rel_depth"]
        ax.plot(x, rows[metric], marker="o", label=run, **styles[i])
        if _has(rows, f"{control}_low"):
            ax.fill_between(x, rows[f"{control}_low"], rows[control], color=styles[i]["color"], alpha=0.2, lw=0,
                            label=f"{run}: untrained network")
        elif _has(rows, control):
            ax.plot(x, rows[control], ls="--", lw=1, alpha=0.6, color=styles[i]["color"],
                    label=f"{run}: untrained network")
    if same:
        _block_axis(ax, blocks[0])
    else:
        ax.set_xlabel("relative depth (block / number of blocks)")
    ax.set_ylabel(f"{MEASURES.get(metric, metric)}\n({metric})")
    ax.set_title(f"{metric} by depth")
    _legend_below(ax, ncol=min(len(runs), 4))
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
        ax2.set_ylabel("share")
        _legend_below(ax2)
        ax2.set_title("What the statistics predicted")
    _block_axis(axes[-1], names)
    return fig


@styled
def attribution_depth(blocks: pd.DataFrame) -> Figure:
    """Class-specificity by depth, plain and weighted by each channel's mean |attribution|, and each
    block's share of all |attribution| (attribution_blocks table)."""
    fig = StyledFigure(figsize=(12, 4.2), layout="constrained")
    ax, ax2 = _side_by_side(fig, 2)
    x, names = np.arange(len(blocks)), blocks["block"].tolist()
    ax.plot(x, blocks["eta2_mean"], "o-", color="C0", label="mean eta2 over channels")
    ax.plot(x, blocks["eta2_weighted"], "s--", color="C3", label="attribution-weighted eta2")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("class share of gate variance\n(eta2)")
    _legend_below(ax)
    ax.set_title("Class-specific and used")
    ax2.bar(x, blocks["share_abs_attr"], color="C2")
    ax2.set_ylabel("share of |attribution|")
    ax2.set_title("Where the class logit's attribution goes")
    for a in (ax, ax2):
        _block_axis(a, names)
    return fig


@styled
def trajectory_figure(table: pd.DataFrame, measure: str = "shape_sep") -> Figure:
    """A training trajectory (analysis.experiments.trajectory): each onset's block against the epoch,
    with the test accuracy (left); `measure` against the block, one line per epoch (right)."""
    fig = StyledFigure(figsize=(12, 4), layout="constrained")
    ax, ax2 = fig.subplots(1, 2)
    names = list(dict.fromkeys(table["block"]))
    per_epoch = table.drop_duplicates("epoch")
    for notion, style in zip(("shape", "magnitude", "detectable"), ("o-", "^-.", "s--")):
        if f"onset_{notion}" in per_epoch:
            depth = per_epoch[f"onset_{notion}"].map({name: i for i, name in enumerate(names)})
            ax.plot(per_epoch["epoch"], depth, style, label=f"onset ({notion}; missing: none or undetermined)")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("epoch")
    ax.set_ylabel("onset block")
    accuracy = ax.twinx()
    accuracy.plot(per_epoch["epoch"], per_epoch["test_accuracy"], ":", color="0.4", label="test accuracy")
    accuracy.set_ylabel("test accuracy")
    ax.legend(fontsize=7, loc="upper left")
    accuracy.legend(fontsize=7, loc="lower right")
    ax.set_title("Where gating becomes class-specific, by epoch")
    for epoch, rows in table.groupby("epoch"):
        ax2.plot(range(len(rows)), rows[measure], "o-", label=f"epoch {epoch}")
    _block_axis(ax2, names)
    ax2.set_ylabel(measure)
    ax2.legend(fontsize=7)
    ax2.set_title(f"{measure} by block, one line per epoch")
    return fig
