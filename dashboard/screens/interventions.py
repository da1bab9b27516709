"""Interventions: the accuracy change when a block's gates are replaced, beside what the statistics
predicted, and where the class logit's attribution goes."""

import streamlit as st

from analysis.presentation import figures, views
from dashboard.loaders import selected_run

run = selected_run()
st.header("Interventions")
if not run.has_table("interventions"):
    st.info("No interventions measured for this run yet; this command adds them:")
    st.code(f"se-analysis ablate --out {run.path} ...", language=None)
else:
    rows = views.block_interventions(run)
    if not rows.empty:
        st.pyplot(figures.intervention_effects(rows), clear_figure=True)
        st.caption("Predicted removable: every block of the group saturated or class-agnostic; measured "
                   "removable: the 95% interval of the accuracy change stays above -1 point.")
    st.dataframe(run.table("interventions"), hide_index=True)
st.subheader("Attributions")
if not run.has_table("attribution_blocks"):
    st.info("No attributions for this run yet; this command adds them:")
    st.code(f"se-analysis attribute --out {run.path} ...", language=None)
else:
    blocks = run.table("attribution_blocks")
    st.pyplot(figures.attribution_depth(blocks), clear_figure=True)
    st.dataframe(blocks, hide_index=True)
