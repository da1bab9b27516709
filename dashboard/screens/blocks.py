"""Block explorer: class-mean gate profiles of chosen blocks (the SE paper's figure); one block's
measures beside their controls, its class x channel heatmap (a click opens that channel) and its gate
distributions."""

import streamlit as st

from analysis.presentation import figures, views
from dashboard.loaders import selected_run
from dashboard.widgets import block_choice, block_table, image, pick_classes, show, show_heatmap

SCALE_NAMES = {"deviation": "each class minus the all-class curve", "data": "the curves on their data's range",
               "unit": "the curves on 0..1 (as the SE paper)"}

run = selected_run()
st.header("Block explorer")
blocks = st.multiselect("blocks", views.block_names(run), default=views.default_blocks(run))
classes = pick_classes(run, "classes")
spread = st.toggle("mean and spread (+- one within-class std)")
scale = st.selectbox("scale", figures.SCALES, format_func=SCALE_NAMES.get,
                     help="The SE paper drew the class curves on 0..1, where trained gates that differ by "
                          "0.01 between classes look like one line; the deviations show those differences.")
if blocks and classes:
    order = {name: i for i, name in enumerate(views.block_names(run))}
    key = (tuple(sorted(blocks, key=order.get)), tuple(classes), spread, scale)
    if scale == "deviation":  # the captions describe this scale
        show("profiles", run, *key, about="profiles_spread" if spread else "profiles")
    else:
        image("profiles", run, *key)
        st.caption(f"The SE paper's figure: each class's mean gate per channel, {SCALE_NAMES[scale]}; black: the "
                   "mean over all classes" + ("; bands: +- one within-class standard deviation." if spread else "."))
block = block_choice(run, "block for the heatmap and distributions")
block_table(run.blocks[run.blocks["block"] == block][views.present(run, views.BLOCK_COLUMNS)])
show_heatmap(run, block)
if classes:
    show("distribution", run, block, None, tuple(classes), about="distributions")
