"""Compare runs: one block metric against relative depth for several runs of the runs folder."""

import streamlit as st

from analysis.errors import AnalysisError
from analysis.presentation import figures, views
from dashboard.loaders import inside, open_run, run_folders, runs_root, selected_run, stamp
from dashboard.widgets import md

root, current = runs_root(), selected_run()
st.header("Compare runs")
runs, broken = {}, []
for name in run_folders(root):
    try:
        path = inside(root, name)
        run = open_run(str(path), stamp(path))
        if not run.blocks.empty:  # read now, so a damaged table is reported here, not in the figure
            runs[name] = run
    except AnalysisError:
        broken.append(name)
if broken:
    st.caption(f"Not comparable (open them for the reason): {md(', '.join(broken))}")
ordered = sorted(runs, key=lambda name: runs[name].path != current.path)
chosen = st.multiselect("runs", ordered, default=ordered[:6])
metrics = ("eta2_excess", "eta2_mean", "shape_sep", "profile_sep", "class_mod", "eps2_mean", "probe_acc",
           "probe_selectivity", "frac_significant", "mi_bits_mean", "class_corr_mean", "sat_high", "gate_std")
metric = st.selectbox("metric", [m for m in metrics if any(m in run.blocks for run in runs.values())] or metrics[:1])
if chosen:
    picked = {name: runs[name] for name in chosen}
    st.pyplot(figures.compare_curves(views.compare(picked), metric), clear_figure=True)
    st.dataframe([{"run": name, **views.summary(run)} for name, run in picked.items()], hide_index=True)
