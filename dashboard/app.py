"""Streamlit dashboard over analysis runs: `se-analysis dashboard --runs DIR`.

A thin app: every number comes from `analysis.presentation.views`, every picture from
`analysis.presentation.figures`, every load from `dashboard.loaders` (cached). This entry file
only routes: the sidebar's run picker, shared by all pages, and one page per file in
dashboard/screens/, each with its own address (deep link), e.g. /blocks?run=epochs/epoch_001.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from analysis.errors import AnalysisError
from dashboard import loaders
from dashboard.widgets import PAGES, md, warnings

SCREENS = Path(__file__).resolve().parent / "screens"


def pick_run(names: list[str]) -> str:
    """The sidebar's run picker, starting from the link's ?run= and writing the choice back to the
    address, so that the address of any page names its run."""
    linked = st.query_params.get(loaders.RUN_KEY)
    name = st.sidebar.selectbox("run", names, index=names.index(linked) if linked in names else 0, key=loaders.RUN_KEY)
    st.query_params[loaders.RUN_KEY] = name
    return name


def main() -> None:
    # The narrowest sidebar Streamlit allows (200 px) leaves the headline table room at 1280 px.
    st.set_page_config(page_title="SE gate atlas", layout="wide", initial_sidebar_state=200)
    page = st.navigation([st.Page(SCREENS / file, title=title, url_path=url, default=i == 0)
                          for i, (url, (file, title)) in enumerate(PAGES.items())])
    root = loaders.runs_root()
    names = loaders.run_folders(root)
    st.sidebar.title("SE gate atlas")
    st.sidebar.caption(f"runs folder: {md(root)}")
    if not names:
        st.warning(f"No run folders in {md(root)}. Make one with `se-analysis demo` or `se-analysis collect`.")
        return
    name = pick_run(names)
    try:
        warnings(loaders.first_load(loaders.inside(root, name)))  # on every page: what the run warns of
        page.run()
    except AnalysisError as e:
        st.error(f"This run cannot be shown: {md(e)}")


main()
