"""Overview: what was measured, both onsets, specificity with its controls, shape and saturation by
depth, the blocks table."""

import streamlit as st

from analysis.presentation import views
from dashboard.loaders import selected_run
from dashboard.widgets import block_table, md, onsets, show

run = selected_run()
s = views.summary(run)
st.header("Overview")
st.markdown("**Model**")
st.text(s["model"])
st.markdown("**Data**")
st.text(s["data"])
cols = st.columns(6)
cols[0].metric("samples", f"{s['samples']:,}")
cols[1].metric("classes", s["classes"])
cols[2].metric("SE blocks", f"{s['blocks']} ({s['channels']:,} ch)")
cols[3].metric("accuracy", f"{s['accuracy']:.2%}" if s["accuracy"] is not None else "unknown")
cols[4].metric("onset (shape)", md(s["onset"] or "none"))
cols[5].metric("onset (detectable)", md(s["onset_detectable"] or "none"))
onsets(run)
st.caption(f"Chance levels: eta2 {s['eta2_null']:.4f}, probe {s['probe_chance']:.3f}.")
show("depth", run)
if views.present(run, ("shape_sep",)):
    show("shape", run)
show("saturation", run)
st.subheader("Blocks")
block_table(run.blocks[views.present(run, views.BLOCK_COLUMNS)])
with st.expander("every column"):
    block_table(run.blocks)
