"""Block explorer: class-mean gate profiles of chosen blocks (the SE paper's figure), one block's
measures beside their controls, its class x channel heatmap and its gate distributions."""

import streamlit as st

from analysis.presentation import views
from dashboard.loaders import selected_run
from dashboard.widgets import block_table, pick_classes, show

run = selected_run()
st.header("Block explorer")
blocks = st.multiselect("blocks", views.block_names(run), default=views.default_blocks(run))
classes = pick_classes(run, "classes")
spread = st.toggle("mean and spread (+- one within-class std)")
if blocks and classes:
    show("profiles", run, tuple(blocks), tuple(classes), spread)
block = st.selectbox("block for the heatmap and distributions", views.block_names(run),
                     index=len(views.block_names(run)) - 1)
block_table(run.blocks[run.blocks["block"] == block][views.present(run, views.BLOCK_COLUMNS)])
show("heatmap", run, block)
if classes:
    show("distribution", run, block, None, tuple(classes))
