"""Classes: how alike the classes' gate profiles are in one block, and which channels one class opens
(a row of that table opens its channel)."""

import streamlit as st

from analysis.presentation import views
from dashboard.loaders import class_means, selected_run, stamp
from dashboard.widgets import block_choice, md, open_page, show

run = selected_run()
st.header("Classes")
names = views.class_names(run)
block = block_choice(run)
show("similarity", run, block)
present = views.present_classes(run)
klass = st.selectbox("class", present, format_func=lambda c: f"{c}: {names[c]}")
per_block, top = views.class_drivers(run, class_means(str(run.path), stamp(run.path)), klass)
st.markdown(f"Share of each block's channels that prefer **{md(names[klass])}** (chance {1 / len(present):.3f}):")
st.bar_chart(per_block.set_index("block")["share"])
st.markdown("Channels this class opens most above the other classes (select a row to open that channel):")
event = st.dataframe(top, hide_index=True, key="drivers", on_select="rerun", selection_mode="single-row")
if event.selection.rows:
    row = top.iloc[event.selection.rows[0]]
    open_page("channels", block=row["block"], channel=int(row["channel"]))
