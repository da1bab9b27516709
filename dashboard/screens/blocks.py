"""Block explorer: class-mean gate profiles of chosen blocks (the SE paper's figure); one block's
measures beside their controls, its class x channel heatmap (a click opens that channel) and its gate
distributions."""

import streamlit as st

from analysis.presentation import views
from dashboard.loaders import selected_run
from dashboard.widgets import block_choice, block_table, pick_classes, show, show_heatmap

run = selected_run()
st.header("Block explorer")
blocks = st.multiselect("blocks", views.block_names(run), default=views.default_blocks(run))
classes = pick_classes(run, "classes")
spread = st.toggle("mean and spread (+- one within-class std)")
if blocks and classes:
    order = {name: i for i, name in enumerate(views.block_names(run))}
    show("profiles", run, tuple(sorted(blocks, key=order.get)), tuple(classes), spread)
block = block_choice(run, "block for the heatmap and distributions")
block_table(run.blocks[run.blocks["block"] == block][views.present(run, views.BLOCK_COLUMNS)])
show_heatmap(run, block)
if classes:
    show("distribution", run, block, None, tuple(classes))
