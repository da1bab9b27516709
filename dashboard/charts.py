"""The dashboard's interactive chart: the class x channel heatmap as Vega-Lite, where a click on a
channel opens it and hovering shows its numbers.

The matrix (views.heatmap_matrix: 1000 classes x 1000 columns at ImageNet scale) is one PNG image
inside the chart, which a browser draws at once; over it lies one transparent rectangle per column
(per cell while there are few), which carries the hover text and the click. The report draws the same
matrix with figures.class_channel_heatmap.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd
from matplotlib import colormaps
from PIL import Image

from analysis.presentation import views
from analysis.runs.folder import Run

CELLS = 20_000  # up to this many classes x columns, every cell hovers with its own value
LABELLED = 40  # classes named on the axis up to this many (beyond, hover a cell for its class)
PICK = "pick"  # the chart's click selection, as Streamlit names it in the returned event


@dataclass(frozen=True)
class Heatmap:
    """What the heatmap chart draws: the matrix as a PNG, its colour limit, and its hover targets."""

    image: bytes  # [K, G] matrix coloured RdBu_r over [-limit, limit], one pixel per cell
    limit: float
    classes: list[str]
    channels: int
    targets: pd.DataFrame  # x0, x1, y0, y1 (chart coordinates) and what the tooltip shows, `channel` to open


def heatmap(run: Run, block: str, mean: np.ndarray, classes: list[str], max_columns: int) -> Heatmap:
    """The heatmap of one block: mean [K', C] of the classes with samples (views.present_means)."""
    order = views.preferred_order(run, block)
    matrix, starts = views.heatmap_matrix(mean, order, max_columns)
    limit = float(np.abs(matrix).max()) or 1.0
    rgba = colormaps["RdBu_r"]((matrix + limit) / (2 * limit), bytes=True)
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="png", compress_level=1)
    ends = np.append(starts[1:], len(order))
    table = run.channels[run.channels["block"] == block].set_index("channel").loc[order]
    # per column: its most class-specific channel, the one a click opens
    column = np.repeat(np.arange(len(starts)), ends - starts)
    best = pd.Series(table["eta2"].to_numpy()).groupby(column).idxmax().to_numpy()
    picked = table.iloc[best]
    columns = pd.DataFrame({"x0": starts, "x1": ends, "channel": picked.index.to_numpy(), "channels": ends - starts,
                            "eta2": picked["eta2"].round(4).to_numpy(),
                            "prefers": picked["preferred_class_name"].astype(str).to_numpy()})
    k = len(classes)
    if k * len(columns) <= CELLS:
        targets = pd.concat([columns.assign(y0=k - i - 1, y1=k - i, klass=name, value=matrix[i].round(5))
                             for i, name in enumerate(classes)], ignore_index=True)
    else:
        targets = columns.assign(y0=0, y1=k)
    return Heatmap(buffer.getvalue(), limit, classes, len(order), targets)


def heatmap_chart(h: Heatmap, block: str) -> alt.LayerChart:
    """The chart of `heatmap`: click a column to pick its channel (selection PICK, field `channel`)."""
    k = len(h.classes)
    url = "data:image/png;base64," + base64.b64encode(h.image).decode()
    x = alt.X("x0:Q", title="channel (ordered by preferred class)", axis=alt.Axis(format="d", tickMinStep=1),
              scale=alt.Scale(domain=[0, h.channels], nice=False, zero=False))
    names = json.dumps(h.classes)  # a JSON array of strings is a Vega expression's array literal
    labels = {"values": [i + 0.5 for i in range(k)], "labelExpr": f"{names}[{k - 1} - floor(datum.value)]",
              "labelOverlap": False} if k <= LABELLED else {"labels": False, "ticks": False}
    y = alt.Y("y0:Q", title="class", scale=alt.Scale(domain=[0, k], nice=False, zero=False),
              axis=alt.Axis(grid=False, **labels))
    image = alt.Chart(pd.DataFrame({"x0": [0], "x1": [h.channels], "y0": [0], "y1": [k], "url": [url]})).mark_image(
        aspect=False, smooth=False).encode(x=x, x2="x1:Q", y=y, y2="y1:Q", url="url:N")
    pick = alt.selection_point(name=PICK, fields=["channel"], on="click")
    hover = alt.selection_point(name="hover", fields=["x0"], on="pointerover", clear="pointerout", empty=False)
    tooltip = [alt.Tooltip("channel:Q", title="channel (click to open)"), alt.Tooltip("channels:Q", title="channels in column"),
               alt.Tooltip("eta2:Q"), alt.Tooltip("prefers:N", title="preferred class")]
    if "klass" in h.targets:
        tooltip += [alt.Tooltip("klass:N", title="class"), alt.Tooltip("value:Q", title="class mean - all-class mean")]
    targets = alt.Chart(h.targets).mark_rect(stroke="black").encode(
        x=alt.X("x0:Q", axis=None), x2="x1:Q", y=alt.Y("y0:Q", axis=None), y2="y1:Q", tooltip=tooltip,
        opacity=alt.condition(hover, alt.value(0.25), alt.value(0)),
        strokeOpacity=alt.condition(hover, alt.value(0.6), alt.value(0))).add_params(pick, hover)
    return (image + targets).properties(title=f"{block}: class-mean gates", height=min(60 + 26 * k, 560))
