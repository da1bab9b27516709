"""Pieces that several pages show: a cached figure of the selected run, a class picker."""

from __future__ import annotations

import streamlit as st

from analysis.presentation import views
from analysis.runs.folder import Run
from dashboard.loaders import figure, token


def show(kind: str, run: Run, *key) -> None:
    st.image(figure(kind, str(run.path), token(run.path), tuple(key)), width="stretch")


def pick_classes(run: Run, label: str, n: int = 4, key: str | None = None) -> list[int]:
    names = views.class_names(run)
    chosen = st.multiselect(label, range(len(names)), default=views.spread_out(list(range(len(names))), n),
                            format_func=lambda c: f"{c}: {names[c]}", key=key)
    return sorted(chosen)
