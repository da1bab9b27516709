"""Pieces that several pages show: a cached figure of the selected run, a class picker, a run's
strings made safe for Markdown, its warnings, a block table with each column's meaning."""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from analysis.measures import schema
from analysis.presentation import views
from analysis.runs.folder import Run
from dashboard.loaders import figure, stamp

# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping them all keeps
# links, images, emphasis, HTML tags and Streamlit's :color[...] directives of a run's text inert.
_MARKDOWN = re.compile(r"([!-/:-@\[-`{-~])")


def md(text: object) -> str:
    """A string from a run (model name, class name, path, warning) as literal text inside Markdown:
    labels, captions, st.markdown, st.error all render Markdown, and a crafted run must not make the
    viewer's browser load or link anything."""
    return _MARKDOWN.sub(r"\\\1", str(text)).replace("\n", " ")


def show(kind: str, run: Run, *key) -> None:
    st.image(figure(kind, str(run.path), stamp(run.path), tuple(key)), width="stretch")


def pick_classes(run: Run, label: str, n: int = 4, key: str | None = None) -> list[int]:
    names, present = views.class_names(run), views.present_classes(run)
    chosen = st.multiselect(label, present, default=views.spread_out(present, n),
                            format_func=lambda c: f"{c}: {names[c]}", key=key)
    return sorted(chosen)


def warnings(run: Run) -> None:
    """The run's own warnings (degenerate data and the like), each shown as text."""
    for warning in views.run_warnings(run):
        st.warning(f"This run warns: {md(warning)}")


def onsets(run: Run) -> None:
    """Both onsets, each with its rule and one line on what it means (from the schema)."""
    for onset in views.onsets(run):
        st.markdown(f"**{onset['label']}: {md(onset['block'] or 'none')}**: {md(onset['meaning'])}.  \n"
                    f"rule: {md(onset['rule'])}")


def block_table(table: pd.DataFrame) -> None:
    """A blocks table with each column's meaning as its help text (schema, the one place of column docs)."""
    known = {c.name for c in schema.columns("blocks")}
    st.dataframe(table, hide_index=True, column_config={
        c: st.column_config.Column(help=schema.doc("blocks", c)) for c in table.columns if c in known})
