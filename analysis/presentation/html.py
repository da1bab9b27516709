"""The pieces of the self-contained HTML pages (reports, the paper page): run text is always escaped.

    html_page("title", f"<h1>...</h1>{text_list(lines)}{figure('depth', fig)}{table(run.blocks)}")
"""

from __future__ import annotations

import base64
import html
import io

import pandas as pd
from matplotlib.figure import Figure

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; font-size: 0.8em; } td, th { padding: 2px 6px; border-bottom: 1px solid #ddd; }
img { max-width: 100%; } .summary li { margin: 0.2em 0; }
"""


def data_uri(fig: Figure) -> str:
    """The figure as a PNG data URI, so that a page opens offline from its one file."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def figure(name: str, fig: Figure) -> str:
    return f"<h3>{html.escape(name.replace('_', ' '))}</h3><img alt='{html.escape(name)}' src='{data_uri(fig)}'>"


def html_page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def table(frame: pd.DataFrame) -> str:
    """The frame as an HTML table; pandas escapes every cell."""
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)


def text_list(lines: list[str]) -> str:
    """Lines of run text as a list, shown as text, never as markup."""
    return f"<ul class='summary'>{''.join(f'<li>{html.escape(line)}</li>' for line in lines)}</ul>"
