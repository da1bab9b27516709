"""The look of every figure: one style applied while a figure is built and drawn, and one palette.

Importing this module changes no backend and no style: the style is a plain dict applied inside
`styled` builders and `StyledFigure.draw`, so the caller's rcParams stay as they were.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec

import matplotlib
import seaborn as sns
from cycler import cycler
from matplotlib.figure import Figure

# Colour-blind-safe: Okabe & Ito's (2008) seven colours (their black is kept for the all-class curve),
# in an order whose first four stay apart under every common colour-vision deficiency, then three of
# Paul Tol's muted colours. Classes beyond ten repeat the colours with another line style.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#332288", "#999933", "#882255")
LINE_STYLES = ("-", "--", ":", "-.")
# sns.set_theme(style="whitegrid", context="notebook") as a plain dict, so that nothing is set at import;
# text as text: a run's names (classes, blocks, runs) may hold `$`, which mathtext would parse (and fail on)
STYLE = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook"), "font.family": "sans-serif",
         "axes.prop_cycle": cycler(color=PALETTE), "text.parse_math": False}
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


def class_styles(classes: Sequence[int]) -> dict[int, dict[str, str]]:
    """Colour and line style of each class drawn together, by its place among them: the classes of one
    figure get the most distinct colours, whatever their labels (Dress, 3, and Ankle boot, 9, of
    Fashion-MNIST look alike in most palettes)."""
    return {k: {"color": PALETTE[i % len(PALETTE)], "ls": LINE_STYLES[i // len(PALETTE) % len(LINE_STYLES)]}
            for i, k in enumerate(classes)}
