"""The SE paper's figure (Figs. 6-7): per block, the class-mean gate of every channel for chosen
classes beside the all-class curve; by default as each class's deviation from that curve, because
trained gates sit at 0.4-0.6 while classes differ by ~0.01. The reports, the paper page and the
dashboard all draw it here (re-exported by analysis.presentation.figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis.presentation.style import StyledFigure, class_styles, styled

Scale = Literal["deviation", "data", "unit"]
SCALES: tuple[Scale, ...] = ("deviation", "data", "unit")  # class_profiles' y axes, the default first


def envelope(values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, low, high): per run of consecutive channels, the channel index at the run's middle and the
    lowest and highest value; with no more than `bins` runs. A line drawn through low and high in
    turn looks, at one run per pixel, like the line through every value, at a fraction of the
    drawing time. values: [C] -> three arrays of length min(C, bins)."""
    width = -(-len(values) // bins)
    runs = np.arange(0, len(values), width)
    return runs + (np.minimum(runs + width, len(values)) - 1 - runs) / 2, np.minimum.reduceat(values, runs), \
        np.maximum.reduceat(values, runs)


def _profile_axes(fig: Figure, n: int, scale: Scale) -> list[tuple]:
    """Per panel (strip, main): in "deviation", a strip for the all-class curve above the main axes of
    the class curves' deviations from it; else only main axes (strip None). Spare cells are hidden."""
    cols = min(n, 3)
    rows = -(-n // cols)
    height = fig.get_figheight()
    grid = fig.add_gridspec(rows, cols, left=0.08, right=0.98, top=1 - 0.35 / height, bottom=1.15 / height,
                            hspace=0.38, wspace=0.32)
    panels = []
    for cell in list(grid)[:n]:
        if scale == "deviation":
            strip_cell, main_cell = cell.subgridspec(2, 1, height_ratios=(1, 2.6), hspace=0.08)
            strip = fig.add_subplot(strip_cell)
            main = fig.add_subplot(main_cell, sharex=strip)
            strip.tick_params(labelbottom=False)
            panels.append((strip, main))
        else:
            panels.append((None, fig.add_subplot(cell)))
    return panels


@styled
def class_profiles(  # long: the SE paper's figure in three scales, lines or envelopes, bands
    profiles: dict[str, tuple[np.ndarray, np.ndarray]], classes: Sequence[int], class_names: Sequence[str],
    spread: bool = False, max_points: int | None = None, scale: Scale = "deviation",
    common: dict[str, np.ndarray] | None = None, colors: dict[int, dict[str, str]] | None = None,
    xlabel: str = "channel",
) -> Figure:
    """The SE paper's figure: per block, the class-mean gate of every channel for chosen classes and
    the all-class curve.

    `profiles[block] = (mean [K, C], std [K, C])`, NaN rows for classes without samples; `common[block]`
    [C] the all-class curve (default: the mean of the class rows with samples). `scale`:
    "deviation" (default) draws each class curve minus the all-class curve, on a symmetric range that
    fits them, with the all-class curve on its own range in a strip above: trained gates sit at
    0.4-0.6 while classes differ by ~0.01, which a 0..1 axis shows as one line. "data": the curves
    themselves on the range of the data; "unit": on 0..1, as the paper drew them. With `spread`,
    each class gets a band of +- one within-class standard deviation. With `max_points`, blocks of
    more channels are drawn from their envelope over max_points / 2 runs of channels (the
    dashboard's screen resolution), which keeps every peak and trough. `colors`: class -> matplotlib
    style (default `class_styles(classes)`, by place among the classes drawn).
    """
    styles = colors or class_styles(classes)
    rows = -(-len(profiles) // min(len(profiles), 3))
    # A fixed layout: constrained layout costs a third of the drawing time at 2048 channels.
    fig = StyledFigure(figsize=(5 * min(len(profiles), 3), (3.9 if scale == "deviation" else 3.2) * rows + 0.7))

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

    for (strip, ax), (block, (mean, std)) in zip(_profile_axes(fig, len(profiles), scale), profiles.items()):
        overall = common[block] if common is not None else np.nanmean(mean, axis=0)
        base = overall if scale == "deviation" else 0.0
        for c in classes:
            line(ax, mean[c] - base, lw=1.2, label=class_names[c], **styles[c])
            if spread:
                band(ax, mean[c] - base - std[c], mean[c] - base + std[c], color=styles[c]["color"], alpha=0.25, lw=0)
        if scale == "deviation":
            ax.axhline(0, lw=1.2, color="black", label="all classes")
            line(strip, overall, lw=1.2, color="black")
            strip.set_title(block)
            strip.set_ylabel("all classes", fontsize=8)
            reach = np.nanmax([np.abs(mean[c] - overall) + (std[c] if spread else 0) for c in classes])
            if reach > 0:
                ax.set_ylim(-1.1 * reach, 1.1 * reach)
            ax.set_ylabel("class - all classes", fontsize=9)
        else:
            line(ax, overall, lw=1.2, color="black", label="all classes")
            ax.set_title(block)
            ax.set_ylabel("gate value (mean)")
            if scale == "unit":
                ax.set_ylim(0, 1)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = fig.axes[1 if scale == "deviation" else 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8)
    return fig
