"""Overview: what was measured, one line per onset, the headline table (a row opens its block in the
Block explorer), specificity with its controls, shape and saturation by depth, every column below."""

import streamlit as st

from analysis.presentation import views
from analysis.presentation.numbers import formatted
from dashboard.loaders import selected_run
from dashboard.widgets import block_table, onsets, open_page, show

run = selected_run()
s = views.summary(run)
st.header("Overview")
st.markdown("**Model**")
st.text(s["model"])
st.markdown("**Data**")
st.text(s["data"])
cols = st.columns(5)
cols[0].metric("samples", f"{s['samples']:,}")
cols[1].metric("classes", s["classes"])
cols[2].metric("SE blocks", s["blocks"])
cols[3].metric("gate channels", f"{s['channels']:,}")
cols[4].metric("accuracy", f"{s['accuracy']:.2%}" if s["accuracy"] is not None else "unknown")
onsets(run)  # the answer: one line per onset, with its numbers, "undetermined" where it cannot be said
st.subheader("Blocks")
row = block_table(formatted(views.headline(run)), key="blocks_table")
if row is not None:
    open_page("blocks", block=run.blocks["block"].iloc[row])
st.caption(f"Each measure beside its controls (hover a column's name for its meaning); chance levels: eta2 "
           f"{s['eta2_null']:.4f}, probe {s['probe_chance']:.3f}. Click a row to open that block in the Block explorer.")
with st.expander("every column"):
    block_table(run.blocks)
show("depth", run)
if views.present(run, ("shape_sep",)):
    show("shape", run)
show("saturation", run)
