"""Pieces that several pages show: a cached figure of the selected run, the clickable heatmap, a
class picker, choices that follow the page's address, links between pages, a run's strings made
safe for Markdown, its warnings, a block table with each column's meaning."""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from analysis.measures import schema
from analysis.presentation import views
from analysis.presentation.answer import onset_lines, onset_rules
from analysis.presentation.captions import caption
from analysis.runs.folder import Run
from dashboard import charts, loaders
from dashboard.loaders import figure, stamp

# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping them all keeps
# links, images, emphasis, HTML tags and Streamlit's :color[...] directives of a run's text inert.
_MARKDOWN = re.compile(r"([!-/:-@\[-`{-~])")
PAGES = {  # url_path: (file in screens/, title); the first is the default page, at /
    "overview": ("overview.py", "Overview"),
    "blocks": ("blocks.py", "Block explorer"),
    "channels": ("channels.py", "Channel explorer"),
    "classes": ("classes.py", "Classes"),
    "compare": ("compare.py", "Compare"),
    "interventions": ("interventions.py", "Interventions"),
    "training": ("training.py", "Training"),
}


def md(text: object) -> str:
    """A string from a run (model name, class name, path, warning) as literal text inside Markdown:
    labels, captions, st.markdown, st.error all render Markdown, and a crafted run must not make the
    viewer's browser load or link anything."""
    return _MARKDOWN.sub(r"\\\1", str(text)).replace("\n", " ")


def image(kind: str, run: Run, *key) -> None:
    """The figure `kind` of the run (loaders.figure), without a caption."""
    st.image(figure(kind, str(run.path), stamp(run.path), tuple(key)), width="stretch")


def show(kind: str, run: Run, *key, about: str | None = None) -> None:
    """The figure `kind` of the run with its caption: captions' text for `about` (default: the kind),
    the one text the reports print under the same figure."""
    image(kind, run, *key)
    st.caption(caption(about or kind))


def show_compare(runs: dict[str, Run], metric: str) -> None:
    """The Compare figure of `runs`, in their order."""
    st.image(loaders.compare_figure(tuple((name, str(run.path), stamp(run.path)) for name, run in runs.items()), metric),
             width="stretch")
    st.caption(caption("compare"))


def address(**params: object) -> dict[str, str]:
    """The query of a link to a page on the selected run, with the page's choices (block=..., channel=...)."""
    return {loaders.RUN_KEY: st.session_state[loaders.RUN_KEY], **{k: str(v) for k, v in params.items()}}


def open_page(page: str, **params: object) -> None:
    """Go to `page` (a key of PAGES) on the selected run, with the page's choices."""
    st.switch_page(f"screens/{PAGES[page][0]}", query_params=address(**params))


def link(page: str, label: str, **params: object) -> None:
    """A link to `page` (a key of PAGES) on the selected run, with the page's choices."""
    st.page_link(f"screens/{PAGES[page][0]}", label=label, query_params=address(**params))


def show_heatmap(run: Run, block: str) -> None:
    """The clickable class x channel heatmap of `block`: a click opens that channel's page."""
    h = loaders.heatmap(str(run.path), stamp(run.path), block)
    event = st.altair_chart(charts.heatmap_chart(h, block), on_select="rerun", selection_mode=charts.PICK,
                            key=f"heatmap:{block}", width="stretch")
    picked = event.selection.get(charts.PICK) or []
    if picked and "channel" in picked[0]:
        open_page("channels", block=block, channel=int(picked[0]["channel"]))
    st.caption(f"{caption('heatmap')} Here blue {-h.limit:.3g} to red {h.limit:+.3g}. "
               "Hover a column for its numbers; click it to open its channel.")


def linked_choice(label: str, options: list, param: str, default: int = 0, **kwargs):
    """A selectbox that starts from the address's ?param= (a link from another page) and writes the
    choice back, so that the address names what the page shows."""
    linked = st.query_params.get(param)
    texts = [str(o) for o in options]
    choice = st.selectbox(label, options, index=texts.index(linked) if linked in texts else default, **kwargs)
    st.query_params[param] = str(choice)
    return choice


def block_choice(run: Run, label: str = "block") -> str:
    names = views.block_names(run)
    return linked_choice(label, names, "block", names.index(loaders.default_block(run)))


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
    """One line per onset with its numbers against its controls (the lines the terminal and the report
    print); their rules in full in an expander."""
    for line in onset_lines(run):
        st.markdown(md(line))
    with st.expander("the onsets' rules"):
        for label, rule in onset_rules(run):
            st.markdown(f"**{md(label)}**: {md(rule)}")


def block_table(table: pd.DataFrame, key: str | None = None) -> int | None:
    """A blocks table with each column's meaning as its help text (schema, the one place of column
    docs); with `key`, a click on a cell selects its row: the position of that row, else None (a cell,
    not a row, so that no column of checkboxes takes the width the headline table needs at 1280 px)."""
    known = {c.name for c in schema.columns("blocks")}
    config = {c: st.column_config.Column(help=schema.doc("blocks", c)) for c in table.columns if c in known}
    if key is None:
        st.dataframe(table, hide_index=True, column_config=config)
        return None
    event = st.dataframe(table, hide_index=True, column_config=config, key=key, on_select="rerun",
                         selection_mode="single-cell")
    cells = event.selection.cells
    return cells[0][0] if cells else None
