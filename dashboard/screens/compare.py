"""Compare runs: one block metric by depth for several runs of the runs folder (controls are drawn
with their run, never listed as runs), and each run's onsets beside the rule they were computed under."""

import pandas as pd
import streamlit as st

from analysis.errors import AnalysisError
from analysis.presentation import figures, views
from analysis.presentation.answer import onset_rules
from analysis.runs.folder import Run
from dashboard.loaders import inside, open_run, run_folders, runs_root, selected_run, stamp, training_order
from dashboard.widgets import md, show_compare

MAX_DEFAULT = 8  # runs chosen at first: more lines than this are hard to tell apart
METRICS = ("eta2_mean", "eta2_excess", "shape_sep", "profile_sep", "class_mod", "eps2_mean", "probe_acc",
           "probe_selectivity", "frac_significant", "mi_bits_mean", "class_corr_mean", "sat_high", "gate_std")


def notion_cell(notion) -> str:
    """A notion of meta.json's onset record as a table cell: its block (or "no block") with its
    certainty, or "undetermined" with the reason; never a bare "none"."""
    if notion.status == "undetermined":
        return f"undetermined ({notion.reason})"
    found = notion.block or "no block"
    return found if notion.certainty is None else f"{found} (certainty {notion.certainty:.0%})"


def onset_cells(run: Run) -> dict[str, str]:
    """Each onset as a table cell: per notion where the run records them, else its two onsets."""
    notions = getattr(run.meta.onset, "notions", None)
    if notions:
        return {f"onset ({name})": notion_cell(notion) for name, notion in notions.items()}
    return {onset["label"]: onset["block"] or "none" for onset in views.onsets(run)}


def onset_table(runs: dict[str, Run]) -> tuple[pd.DataFrame, list[str]]:
    """One row per run: its epoch, its onsets, the controls they were measured against and the rules
    (numbered over the runs: rule 1, rule 2, ...), and the rules' texts in that numbering."""
    rules: list[str] = []
    rows = []
    for name, run in runs.items():
        numbers = []
        for label, rule in onset_rules(run):
            if rule not in rules:
                rules.append(rule)
            numbers.append(f"{label}: rule {rules.index(rule) + 1}")
        controls, checkpoint = run.meta.controls, run.meta.checkpoint
        rows.append({"run": name, "epoch": checkpoint.epoch if checkpoint else None, **onset_cells(run),
                     "measured against": ", ".join(controls) if controls else "permutation null only (no control)",
                     "rules": "; ".join(numbers)})
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
