"""A PDF that reads like a document: A4 pages filled from the top with headings, paragraphs, tables
(real text, in a monospaced font so that columns line up) and figures scaled to the page width with
their captions; matplotlib's PdfPages, nothing more.

    with Document(path) as doc:
        doc.heading("SE gate report: demo")
        doc.paragraph("...")
        doc.table(run.blocks[["block", "eta2_mean"]])
        doc.figure(png_bytes, "caption")
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.image import imread

from analysis.presentation.numbers import formatted

A4 = (8.27, 11.69)  # inches
MARGIN = 0.7
WIDTH = A4[0] - 2 * MARGIN
LINE = 1.35  # line height in font sizes
TEXT_SIZE, TABLE_SIZE, CAPTION_SIZE = 9.5, 7.0, 8.0
SANS_WIDTH, MONO_WIDTH = 0.55, 0.6  # average (DejaVu Sans, a safe upper bound) and exact (Mono) advance, in ems
TABLE_ROWS = 60  # rows of one table per page at most


def _chars(size: float, em: float) -> int:
    """Characters of a font size that fit the text width."""
    return int(WIDTH / (size / 72 * em))


class Document:
    """A4 pages filled top to bottom; a new page starts where the next item does not fit."""

    def __init__(self, path: Path) -> None:
        self._pdf = PdfPages(path)
        self._page: Figure | None = None
        self._y = 0.0  # inches from the page's top

    def __enter__(self) -> Document:
        return self

    def __exit__(self, *exc) -> None:
        self._finish_page()
        self._pdf.close()

    def _finish_page(self) -> None:
        if self._page is not None:
            self._pdf.savefig(self._page)
            self._page = None

    def _room(self, height: float) -> Figure:
        """The page on which `height` inches fit below what is there (a new one if needed)."""
        if self._page is None or self._y + height > A4[1] - MARGIN:
            self._finish_page()
            self._page, self._y = Figure(figsize=A4), MARGIN
        return self._page

    def _lines(self, lines: list[str], size: float, **style) -> None:
        step = size * LINE / 72
        for line in lines:
            page = self._room(step)
            page.text(MARGIN / A4[0], 1 - (self._y + step * 0.8) / A4[1], line, fontsize=size, va="baseline",
                      parse_math=False, **style)  # a run's names are text, `$` included
            self._y += step

    def heading(self, text: str, size: float = 13, keep: float = 1.2) -> None:
        """A heading, kept on one page with the `keep` inches of what follows it."""
        self._room(size * LINE / 72 + 0.17 + keep)
        self._y += 0.12
        self._lines([text], size, weight="bold")
        self._y += 0.05

    def paragraph(self, text: str, size: float = TEXT_SIZE, color: str = "black") -> None:
        self._lines(textwrap.wrap(text, _chars(size, SANS_WIDTH)) or [""], size, color=color)
        self._y += size * 0.5 / 72

    def table(self, frame: pd.DataFrame, key: str | None = None) -> None:
        """The frame as text, numbers to their precision; columns that do not fit the width continue
        in further parts, each repeating the `key` column (the first by default)."""
        cells = formatted(frame)
        key = key or str(frame.columns[0])
        parts: list[list[str]] = [[key]]
        for column in (c for c in cells.columns if c != key):
            trial = parts[-1] + [column]
            if len(cells[trial].to_string(index=False).splitlines()[0]) > _chars(TABLE_SIZE, MONO_WIDTH):
                parts.append([key, column])
            else:
                parts[-1] = trial
        for part in parts:
            lines = cells[part].to_string(index=False).splitlines()
            for start in range(0, len(lines) - 1, TABLE_ROWS):
                self._room(TABLE_SIZE * LINE / 72 * min(len(lines), 6))
                self._lines([lines[0], "-" * len(lines[0]), *lines[1:][start:start + TABLE_ROWS]], TABLE_SIZE,
                            family="monospace")
            self._y += 0.12

    def figure(self, image: bytes, caption: str = "", title: str = "") -> None:
        """A PNG under its title, scaled to the text width (or to the page height, if taller), its caption
        below it; all three on one page."""
        pixels = imread(io.BytesIO(image))
        wrapped = textwrap.wrap(caption, _chars(CAPTION_SIZE, SANS_WIDTH))
        caption_height = len(wrapped) * CAPTION_SIZE * LINE / 72
        width = WIDTH
        height = width * pixels.shape[0] / pixels.shape[1]
        room = A4[1] - 2 * MARGIN - caption_height - 0.8
        if height > room:
            width, height = width * room / height, room
        if title:
            self.heading(title, keep=height + caption_height + 0.2)
        page = self._room(height + caption_height + 0.2)
        ax = page.add_axes((MARGIN / A4[0], 1 - (self._y + height) / A4[1], width / A4[0], height / A4[1]))
        ax.imshow(pixels, interpolation="none")  # embedded as it is: a vector backend does not resample it
        ax.axis("off")
        self._y += height + 0.08
        self._lines(wrapped, CAPTION_SIZE, color="0.25")
        self._y += 0.15
