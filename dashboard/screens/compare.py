"""Compare runs: one block metric by depth for several runs of the runs folder (controls are drawn
with their run, never listed as runs), and each run's onsets beside the rule they were computed under."""

import pandas as pd
import streamlit as st

from analysis.errors import AnalysisError
from analysis.presentation import figures, views
from analysis.runs.folder import Run
from dashboard.loaders import inside, open_run, run_folders, runs_root, selected_run, stamp, training_order
from dashboard.widgets import md, show_compare

MAX_DEFAULT = 8  # runs chosen at first: more lines than this are hard to tell apart
METRICS = ("eta2_mean", "eta2_excess", "shape_sep", "profile_sep", "class_mod", "eps2_mean", "probe_acc",
           "probe_selectivity", "frac_significant", "mi_bits_mean", "class_corr_mean", "sat_high", "gate_std")


def onset_cells(run: Run) -> dict[str, str]:
    """Each onset's block as a table cell: per notion where the run records them ("none" or
    "undetermined" where no block was found), else its two onsets."""
    notions = getattr(run.meta.onset, "notions", None)
    if notions:
        return {f"onset ({name})": notion.block or notion.status for name, notion in notions.items()}
    return {onset["label"]: onset["block"] or "none" for onset in views.onsets(run)}


def onset_table(runs: dict[str, Run]) -> tuple[pd.DataFrame, list[str]]:
    """One row per run: its epoch, both onsets, the controls they were measured against and the rule
    (numbered: rule 1, rule 2, ...), and the rules' texts in that numbering."""
    rules: list[str] = []
    rows = []
    for name, run in runs.items():
        s = views.summary(run)
        numbers = []
        for rule in (s["onset_rule"], s["onset_rule_detectable"]):
            if rule not in rules:
                rules.append(rule)
            numbers.append(rules.index(rule) + 1)
        controls, checkpoint = run.meta.controls, run.meta.checkpoint
        rows.append({"run": name, "epoch": checkpoint.epoch if checkpoint else None, **onset_cells(run),
                     "measured against": ", ".join(controls) if controls else "permutation null only (no control)",
                     "rules": f"shape: rule {numbers[0]}; detectable: rule {numbers[1]}"})
    return pd.DataFrame(rows), rules


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
ordered = training_order(runs)
group = [name for name in ordered if runs[name].path.parent == current.path.parent]
chosen = st.multiselect("runs", ordered, default=group[:MAX_DEFAULT],
                        help="At first: the runs in the folder of the selected run (e.g. the epoch snapshots of one "
                             "training), in epoch order.")
metric = st.selectbox("metric", [m for m in METRICS if any(m in run.blocks for run in runs.values())] or METRICS[:1],
                      help="Measures with an untrained control (" + ", ".join(figures.CONTROLS) + ") draw each run's "
                           "control beside it: a band between its seeds' smallest and largest value.")
if chosen:
    picked = {name: runs[name] for name in training_order({name: runs[name] for name in chosen})}
    show_compare(picked, metric)
    table, rules = onset_table(picked)
    st.dataframe(table, hide_index=True)
    if len(table.drop_duplicates(["measured against", "rules"])) > 1:
        st.warning("These runs' onsets were computed under different rules or against other "
                   "controls; compare onsets only between runs that agree in both columns.")
    with st.expander("the rules"):
        for i, rule in enumerate(rules, 1):
            st.markdown(f"**rule {i}**: {md(rule)}")
