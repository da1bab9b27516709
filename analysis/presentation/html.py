"""The pieces of the self-contained HTML pages (reports, the paper page): run text is always escaped.

    html_page("title", f"<h1>...</h1>{text_list(lines)}{figure('Depth', png(fig), caption)}{table(run.blocks)}")
"""

from __future__ import annotations

import base64
import html
import io

import pandas as pd
from matplotlib.figure import Figure

from analysis.presentation.numbers import formatted

FIGURE_DPI = 150  # one rendering per figure, shared by the PNG file, the page and the PDF
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222;
       line-height: 1.4; }
.table { overflow: auto; max-height: 36em; margin: 0.5em 0 1em; }
table { border-collapse: collapse; font-size: 0.8em; font-variant-numeric: tabular-nums; }
td, th { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
td:first-child, th:first-child { text-align: left; }
thead th { position: sticky; top: 0; background: #f4f4f4; }
th[title] { text-decoration: underline dotted; cursor: help; }
img { max-width: 100%; } figure { margin: 1.5em 0; } figcaption { color: #444; max-width: 60em; }
.answer li { margin: 0.3em 0; font-size: 1.05em; } details { margin: 1em 0; } summary { cursor: pointer; }
"""


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI)
    return buffer.getvalue()


def data_uri(image: bytes) -> str:
    """A PNG as a data URI, so that a page opens offline from its one file."""
    return "data:image/png;base64," + base64.b64encode(image).decode()


def figure(title: str, image: bytes, caption: str = "", alt: str | None = None) -> str:
    """A figure with its heading and its caption (what it shows, how to read it)."""
    return (f"<figure><h3>{html.escape(title)}</h3><img alt='{html.escape(alt or title)}' src='{data_uri(image)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def html_page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def table(frame: pd.DataFrame, docs: dict[str, str] | None = None) -> str:
    """The frame as an HTML table in a scrolling box with a sticky header, numbers to their precision
    (numbers.formatted); a column in `docs` shows its meaning when hovered. Every cell is escaped."""
    docs = docs or {}
    head = "".join(f"<th title='{html.escape(docs[c])}'>{html.escape(str(c))}</th>" if c in docs
                   else f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
                   for row in formatted(frame).itertuples(index=False))
    return f"<div class='table'><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"


def details(summary: str, inner: str) -> str:
    """A folded section: `summary` (escaped) shown, `inner` (markup) on a click."""
    return f"<details><summary>{html.escape(summary)}</summary>{inner}</details>"


def text_list(lines: list[str], kind: str = "summary") -> str:
    """Lines of run text as a list, shown as text, never as markup."""
    return f"<ul class='{kind}'>{''.join(f'<li>{html.escape(line)}</li>' for line in lines)}</ul>"
