"""Interventions: the accuracy change when the gates of a block (or of a stage, a set, all blocks)
are replaced, in points as `se-analysis ablate` prints it, beside what the statistics predicted;
and where the class logit's attribution goes."""

import streamlit as st

from analysis.presentation import views
from dashboard.loaders import selected_run
from dashboard.widgets import image, show

run = selected_run()
st.header("Interventions")
if not run.has_table("interventions"):
    st.info("No interventions measured for this run yet; this command adds them:")
    st.code(f"se-analysis ablate --out {run.path} ...", language=None)
else:
    rows = views.intervention_rows(run)
    if (rows["kind"] == "block").any():
        show("interventions", run, "block")
        st.caption("Predicted removable: every block of the group saturated or class-agnostic; measured "
                   "removable: the 95% interval of the accuracy change stays above -1 point.")
    if (rows["kind"] != "block").any():
        image("interventions", run, "group")
        st.caption("Groups of blocks (a stage SE_s_*, a set joined by +, all) replaced together.")
    st.dataframe(rows, hide_index=True, column_config={
        "top1_pct": st.column_config.NumberColumn("top-1 %", format="%.2f"),
        "change_pp": st.column_config.NumberColumn("change (points)", format="%+.2f"),
        "change_pp_ci_low": st.column_config.NumberColumn("95% CI low", format="%+.2f"),
        "change_pp_ci_high": st.column_config.NumberColumn("95% CI high", format="%+.2f"),
        "loss_change": st.column_config.NumberColumn(format="%+.4f")})
st.subheader("Attributions")
if not run.has_table("attribution_blocks"):
    st.info("No attributions for this run yet; this command adds them:")
    st.code(f"se-analysis attribute --out {run.path} ...", language=None)
else:
    show("attributions", run)
    st.dataframe(run.table("attribution_blocks"), hide_index=True)
