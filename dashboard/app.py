"""Streamlit dashboard over analysis runs: `se-analysis dashboard --runs DIR`.

A thin app: every number comes from `analysis.views`, every picture from `analysis.figures`.
Loaded runs and rendered figures are cached, keyed by the run folder and its meta.json time, so
after the first load of a run each interaction only slices arrays and reuses images. The app reads
run folders inside the runs folder it was given (from $SE_ANALYSIS_RUNS) and nothing else, except
the data set a run names, and only when the user asks to see its top images.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import streamlit as st

from analysis.presentation import figures

from analysis.presentation import views
from analysis.errors import AnalysisError, RunFolderError
from analysis.runs.folder import Run, load_run

SCREEN_POINTS = 1000  # points per line, columns per heatmap: about two per pixel of a panel at 90 dpi
PAGES = ("Overview", "Block explorer", "Channel explorer", "Classes", "Compare", "Interventions")
RUNS_ENV = "SE_ANALYSIS_RUNS"


def runs_root() -> Path:
    return Path(os.environ.get(RUNS_ENV, "runs")).resolve()


def run_folders(root: Path) -> list[str]:
    """Run folders under root (up to two levels deep), as paths relative to root.

    Folders without meta.json are listed too (unless they group runs), so a broken run says why.
    """
    if not root.is_dir():
        return []
    found = {p.parent for pattern in ("*/meta.json", "*/*/meta.json") for p in root.glob(pattern)}
    found |= {p for p in root.iterdir() if p.is_dir() and not any(f.parent == p for f in found)}
    return sorted(str(p.relative_to(root)) for p in found
                  if not p.name.startswith(".") and p.resolve().is_relative_to(root))


def inside(root: Path, name: str) -> Path:
    """The run folder `name` under root; refuses anything that resolves outside it."""
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise AnalysisError(f"{name} is outside the runs folder {root}.")
    return path


def token(path: Path) -> float:
    """Changes when the run is rewritten, so caches never serve an old run."""
    meta = path / "meta.json"
    return meta.stat().st_mtime if meta.exists() else 0.0


@st.cache_resource(max_entries=8)
def open_run(path: str, _token: float) -> Run:
    return load_run(path)


@st.cache_resource(max_entries=4)
def class_means(path: str, _token: float) -> dict:
    return views.class_mean_arrays(open_run(path, _token))


def png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    figures.close(fig)
    return buffer.getvalue()


@st.cache_data(max_entries=256, show_spinner=False)
def figure(kind: str, path: str, _token: float, key: tuple) -> bytes:
    """One figure of one run as PNG bytes; `key` holds the view's choices (blocks, classes, ...)."""
    run = open_run(path, _token)
    names = views.class_names(run)
    if kind == "depth":
        return png(figures.depth_curve(run.blocks, run.onset))
    if kind == "saturation":
        return png(figures.saturation(run.blocks))
    means = class_means(path, _token)
    if kind == "profiles":
        blocks, classes, spread = key
        return png(figures.class_profiles({b: means[b] for b in blocks}, list(classes), names, spread,
                                          max_points=SCREEN_POINTS))
    if kind == "heatmap":
        (block,) = key
        return png(figures.class_channel_heatmap(means[block][0], views.preferred_order(run, block), names, block,
                                                 max_columns=SCREEN_POINTS))
    if kind == "distribution":
        block, channel, classes = key
        title = f"{block}" + (f" channel {channel}" if channel is not None else " (all channels)")
        return png(figures.gate_distributions(views.gate_distribution(run, block, channel, list(classes)), title))
    if kind == "similarity":
        (block,) = key
        return png(figures.similarity_matrix(views.class_similarity(means[block][0]), names, block))
    raise ValueError(kind)


def show(kind: str, run: Run, *key) -> None:
    st.image(figure(kind, str(run.path), token(run.path), tuple(key)), width="stretch")


def pick_classes(run: Run, label: str, n: int = 4, key: str | None = None) -> list[int]:
    names = views.class_names(run)
    chosen = st.multiselect(label, range(len(names)), default=views.spread_out(list(range(len(names))), n),
                            format_func=lambda c: f"{c}: {names[c]}", key=key)
    return sorted(chosen)


def overview(run: Run) -> None:
    s = views.summary(run)
    st.header("Overview")
    st.markdown(f"**Model** `{s['model']}` · **data** `{s['data']}`")
    cols = st.columns(5)
    cols[0].metric("samples", f"{s['samples']:,}")
    cols[1].metric("classes", s["classes"])
    cols[2].metric("SE blocks", f"{s['blocks']} ({s['channels']:,} ch)")
    cols[3].metric("accuracy", f"{s['accuracy']:.2%}" if s["accuracy"] is not None else "unknown")
    cols[4].metric("onset block", s["onset"] or "none")
    st.caption(f"Onset rule: {s['onset_rule']}. Chance levels: eta2 {s['eta2_null']:.4f}, probe {s['probe_chance']:.3f}.")
    show("depth", run)
    show("saturation", run)
    st.subheader("Blocks")
    st.dataframe(run.blocks, hide_index=True)


def block_explorer_defaults(run: Run) -> list[tuple[str, tuple]]:
    """(kind, key) of each figure the Block explorer shows with its default choices."""
    last = views.block_names(run)[-1]
    classes = tuple(views.spread_out(list(range(len(views.class_names(run)))), 4))
    return [("profiles", (tuple(views.default_blocks(run)), classes, False)), ("heatmap", (last,)),
            ("distribution", (last, None, classes))]


def block_explorer(run: Run) -> None:
    st.header("Block explorer")
    blocks = st.multiselect("blocks", views.block_names(run), default=views.default_blocks(run))
    classes = pick_classes(run, "classes")
    spread = st.toggle("mean and spread (+- one within-class std)")
    if blocks and classes:
        show("profiles", run, tuple(blocks), tuple(classes), spread)
    block = st.selectbox("block for the heatmap and distributions", views.block_names(run),
                         index=len(views.block_names(run)) - 1)
    show("heatmap", run, block)
    if classes:
        show("distribution", run, block, None, tuple(classes))


def channel_explorer(run: Run) -> None:
    st.header("Channel explorer")
    block = st.selectbox("block", views.block_names(run), index=len(views.block_names(run)) - 1)
    table = run.channels[run.channels["block"] == block]
    default = int(table["eta2"].to_numpy().argmax())
    channel = int(st.number_input("channel", 0, len(table) - 1, default, help="default: the most class-specific"))
    st.dataframe(table[table["channel"] == channel], hide_index=True)
    classes = pick_classes(run, "classes", n=10, key="channel_classes")
    if classes:
        show("distribution", run, block, channel, tuple(classes))
    st.subheader("Samples that open this channel most")
    top = views.top_samples(run, block, channel)
    st.dataframe(top, hide_index=True)
    spec = run.meta.get("data", {}).get("spec")
    if spec and len(top) and st.checkbox(f"show these images (reads the data set {spec})"):
        show_images(spec, top["sample_id"].tolist())


def show_images(spec: str, ids: list[int]) -> None:
    from analysis.data.sources import open_data

    try:
        dataset = open_data(spec).dataset
        images = [dataset[i][0] for i in ids]
    except (AnalysisError, OSError, IndexError) as e:
        st.warning(f"The images cannot be shown: {e}")
        return
    cols = st.columns(8)
    for i, (sample, image) in enumerate(zip(ids, images)):
        x = image.float()
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-8)
        cols[i % 8].image(x.permute(1, 2, 0).squeeze(-1).numpy(), caption=f"#{sample}", clamp=True)


def classes_page(run: Run) -> None:
    st.header("Classes")
    names = views.class_names(run)
    block = st.selectbox("block", views.block_names(run), index=len(views.block_names(run)) - 1)
    show("similarity", run, block)
    klass = st.selectbox("class", range(len(names)), format_func=lambda c: f"{c}: {names[c]}")
    per_block, top = views.class_drivers(run, class_means(str(run.path), token(run.path)), klass)
    st.markdown(f"Share of each block's channels that prefer **{names[klass]}** (chance {1 / len(names):.3f}):")
    st.bar_chart(per_block.set_index("block")["share"])
    st.markdown("Channels this class opens most above the other classes:")
    st.dataframe(top, hide_index=True)


def compare_page(root: Path, current: Run) -> None:
    st.header("Compare runs")
    runs, broken = {}, []
    for name in run_folders(root):
        try:
            path = inside(root, name)
            run = open_run(str(path), token(path))
            if not run.blocks.empty:  # read now, so a damaged table is reported here, not in the figure
                runs[name] = run
        except AnalysisError:
            broken.append(name)
    if broken:
        st.caption(f"Not comparable (open them for the reason): {', '.join(broken)}")
    ordered = sorted(runs, key=lambda name: runs[name].path != current.path)
    chosen = st.multiselect("runs", ordered, default=ordered[:6])
    metric = st.selectbox("metric", ("eta2_excess", "eta2_mean", "probe_acc", "frac_significant", "mi_bits_mean",
                                     "class_corr_mean", "sat_high", "gate_std"))
    if chosen:
        picked = {name: runs[name] for name in chosen}
        st.pyplot(figures.compare_curves(views.compare(picked), metric), clear_figure=True)
        st.dataframe([{"run": name, **views.summary(run)} for name, run in picked.items()], hide_index=True)


def interventions_page(run: Run) -> None:
    st.header("Interventions")
    if not run.has_table("interventions"):
        st.info(f"No interventions measured for this run yet: `se-analysis ablate --out {run.path} ...` adds them.")
    else:
        rows = views.block_interventions(run)
        if not rows.empty:
            st.pyplot(figures.intervention_effects(rows), clear_figure=True)
            st.caption("Predicted removable: every block of the group saturated or class-agnostic; measured "
                       "removable: the 95% interval of the accuracy change stays above -1 point.")
        st.dataframe(run.table("interventions"), hide_index=True)
    st.subheader("Attributions")
    if not run.has_table("attribution_blocks"):
        st.info(f"No attributions for this run yet: `se-analysis attribute --out {run.path} ...` adds them.")
        return
    blocks = run.table("attribution_blocks")
    st.pyplot(figures.attribution_depth(blocks), clear_figure=True)
    st.dataframe(blocks, hide_index=True)


def main() -> None:
    st.set_page_config(page_title="SE gate atlas", layout="wide")
    root = runs_root()
    names = run_folders(root)
    st.sidebar.title("SE gate atlas")
    st.sidebar.caption(f"runs folder: {root}")
    if not names:
        st.warning(f"No run folders in {root}. Make one with `se-analysis demo` or `se-analysis collect`.")
        return
    name = st.sidebar.selectbox("run", names)
    page = st.sidebar.radio("page", PAGES)
    try:
        path = inside(root, name)
        run = open_run(str(path), token(path))
        if run.blocks.empty:  # reading it here also lets a damaged run say so on every page
            raise RunFolderError(f"{path} has no SE blocks.")
        class_means(str(path), token(path))  # the one slow read, done on the first load of a run
        for kind, key in block_explorer_defaults(run):  # drawn with the first load: the page then opens at once
            figure(kind, str(path), token(path), key)
        if page == "Compare":
            compare_page(root, run)
        else:
            {"Overview": overview, "Block explorer": block_explorer, "Channel explorer": channel_explorer,
             "Classes": classes_page, "Interventions": interventions_page}[page](run)
    except AnalysisError as e:
        st.error(f"This run cannot be shown: {e}")


main()
