"""Training and similarity: each notion's onset at every epoch of the selected run's training, with
its certainty (the epoch snapshots in the run's folder, as `se-analysis trajectory` writes them), and
linear CKA between the selected run's gates and another run's, block by block (`se-analysis similarity`)."""

import streamlit as st

from analysis.errors import AnalysisError
from analysis.runs.folder import Run
from dashboard import loaders
from dashboard.widgets import md

root, run = loaders.runs_root(), loaders.selected_run()
st.header("Training")
openable: dict[str, Run] = {}
for name in loaders.run_folders(root):
    try:
        path = loaders.inside(root, name)
        openable[name] = loaders.open_run(str(path), loaders.stamp(path))
    except AnalysisError:
        continue  # a broken run says why on its own pages
snapshots = {name: other for name, other in openable.items()
             if other.path.parent == run.path.parent and other.meta.checkpoint and other.meta.checkpoint.epoch is not None}
if len(snapshots) < 2 or not run.meta.checkpoint:
    st.info("This run is not one of several epoch snapshots of one training; this command makes them:")
    st.code("se-analysis trajectory CHECKPOINT_FOLDER --data DATA --out runs/trajectory", language=None)
else:
    ordered = loaders.training_order(snapshots)
    onsets, image = loaders.trajectory(tuple((str(snapshots[n].path), loaders.stamp(snapshots[n].path)) for n in ordered))
    st.dataframe(onsets, hide_index=True)
    st.caption("Each notion's onset block at each epoch of this training, with its certainty (the share of resampled "
               "draws whose own onset is that block); none: no block holds to the end; undetermined: it cannot be "
               "said (the run's meta.json says why).")
    st.image(image, width="stretch")
st.subheader("Similarity of the gates to another run's")
others = [name for name in openable if openable[name].path != run.path]
if not others:
    st.info("No other run in the runs folder to compare with.")
else:
    other = st.selectbox("compare the gates with", others)
    try:
        matrix = loaders.cka(str(run.path), loaders.stamp(run.path), str(openable[other].path),
                             loaders.stamp(openable[other].path))
    except AnalysisError as e:
        st.warning(f"Not comparable: {md(e)}")
    else:
        st.dataframe(matrix, column_config={c: st.column_config.NumberColumn(format="%.3f") for c in matrix.columns})
        st.caption(f"Linear CKA (Kornblith et al. 2019) between this run's blocks (rows) and {md(other)}'s (columns), "
                   "over the images both kept: 1, the same similarity structure of the images up to a rotation and "
                   "scale; 0, none shared.")
