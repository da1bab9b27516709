"""Overview: what was measured, both onsets, specificity with its controls, shape and saturation by
depth, the blocks table (a row opens its block in the Block explorer)."""

import streamlit as st

from analysis.presentation import views
from dashboard.loaders import selected_run
from dashboard.widgets import block_table, md, onsets, open_page, show

run = selected_run()
s = views.summary(run)
st.header("Overview")
st.markdown("**Model**")
st.text(s["model"])
st.markdown("**Data**")
st.text(s["data"])
cols = st.columns(7)
cols[0].metric("samples", f"{s['samples']:,}")
cols[1].metric("classes", s["classes"])
cols[2].metric("SE blocks", s["blocks"])
cols[3].metric("gate channels", f"{s['channels']:,}")
cols[4].metric("accuracy", f"{s['accuracy']:.2%}" if s["accuracy"] is not None else "unknown")
cols[5].metric("onset (shape)", md(s["onset"] or "none"))
cols[6].metric("onset (detectable)", md(s["onset_detectable"] or "none"))
onsets(run)
st.caption(f"Chance levels: eta2 {s['eta2_null']:.4f}, probe {s['probe_chance']:.3f}.")
show("depth", run)
if views.present(run, ("shape_sep",)):
    show("shape", run)
show("saturation", run)
st.subheader("Blocks")
st.caption("Select a row to open that block in the Block explorer.")
columns = views.present(run, views.BLOCK_COLUMNS)
row = block_table(run.blocks[columns], key="blocks_table")
if row is not None:
    open_page("blocks", block=run.blocks["block"].iloc[row])
with st.expander("every column"):
    block_table(run.blocks)
