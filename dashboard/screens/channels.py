"""Channel explorer: one gate channel's statistics, its distribution per class, the samples that
open it most (and, on request, their images)."""

import streamlit as st

from analysis.errors import AnalysisError
from analysis.presentation import views
from dashboard.loaders import selected_run
from dashboard.widgets import block_choice, link, linked_choice, md, pick_classes, show


def show_images(spec: str, ids: list[int]) -> None:
    from analysis.data import open_data

    try:
        dataset = open_data(spec).dataset
        images = [dataset[i][0] for i in ids]
    except (AnalysisError, OSError, IndexError) as e:
        st.warning(f"The images cannot be shown: {md(e)}")
        return
    cols = st.columns(8)
    for i, (sample, image) in enumerate(zip(ids, images)):
        x = image.float()
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-8)
        cols[i % 8].image(x.permute(1, 2, 0).squeeze(-1).numpy(), caption=f"#{sample}", clamp=True)


run = selected_run()
st.header("Channel explorer")
block = block_choice(run)
table = run.channels[run.channels["block"] == block]
default = int(table["eta2"].to_numpy().argmax())
channel = linked_choice("channel", list(range(len(table))), "channel", default,
                        help="At first: the most class-specific channel of the block (largest eta2).")
link("blocks", f"{md(block)} in the Block explorer", block=block)
st.dataframe(table[table["channel"] == channel], hide_index=True)
classes = pick_classes(run, "classes", n=10, key="channel_classes")
if classes:
    show("distribution", run, block, channel, tuple(classes), about="distributions")
st.subheader("Samples that open this channel most")
top = views.top_samples(run, block, channel)
st.dataframe(top, hide_index=True)
spec = run.meta.data.spec if run.meta.data else None
if spec and len(top) and st.checkbox(f"show these images (reads the data set {md(spec)})"):
    show_images(spec, top["sample_id"].tolist())
