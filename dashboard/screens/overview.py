"""Overview: what was measured, the onset block, specificity and saturation by depth, the blocks table."""

import streamlit as st

from analysis.presentation import views
from dashboard.loaders import selected_run
from dashboard.widgets import show

run = selected_run()
s = views.summary(run)
st.header("Overview")
st.markdown(f"**Model** `{s['model']}` · **data** `{s['data']}`")
cols = st.columns(5)
cols[0].metric("samples", f"{s['samples']:,}")
cols[1].metric("classes", s["classes"])
cols[2].metric("SE blocks", f"{s['blocks']} ({s['channels']:,} ch)")
cols[3].metric("accuracy", f"{s['accuracy']:.2%}" if s["accuracy"] is not None else "unknown")
cols[4].metric("onset block", s["onset"] or "none")
st.caption(f"Onset rule: {s['onset_rule']}. Chance levels: eta2 {s['eta2_null']:.4f}, probe {s['probe_chance']:.3f}.")
show("depth", run)
show("saturation", run)
st.subheader("Blocks")
st.dataframe(run.blocks, hide_index=True)
