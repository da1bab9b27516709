"""What the dashboard and the reports show, read from a run: small tables and matrices per view.

Both front ends call these and only draw; nothing here recomputes the run's statistics. Each
function reads just what one view needs (one block's class means, one gate's histogram), so a view
of an ImageNet-scale run stays fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from analysis.errors import RunFolderError
from analysis.data.labels import present_labels
from analysis.experiments.paper import default_blocks as _default_blocks
from analysis.experiments.paper import spread_out  # noqa: F401 - the pages pick classes with it too
from analysis.measures.saturation import SATURATION_RULE, saturated
from analysis.measures.schema import ONSETS
from analysis.runs.folder import Run

# The block-table columns the reports and the dashboard's tables lead with, controls beside each
# measure; `present` keeps those a run has (older runs lack the controls).
BLOCK_COLUMNS = ("block", "channels", "eta2_mean", "eta2_null", "eta2_perm", "perm_p", "eta2_untrained", "eta2_z",
                 "eta2_ci_low", "eta2_ci_high", "eps2_mean", "class_mod", "profile_sep", "shape_sep",
                 "shape_sep_untrained", "frac_significant", "selectivity_median", "mi_bits_mean", "class_corr_mean",
                 "probe_acc", "probe_perm", "probe_selectivity", "probe_untrained", "probe_z", "probe_ncm",
                 "probe_chance", "probe_per_class", "sat_high", "sat_low", "gate_mean", "gate_std")
# The headline: the few columns that answer where gating becomes class-specific, each measure beside
# its controls (a 120-column terminal holds them); the chance levels, the same in every block, go below it.
HEADLINE_COLUMNS = ("block", "eta2_mean", "eta2_untrained", "shape_sep", "shape_sep_perm_q95", "shape_sep_untrained",
                    "probe_acc", "sat_high")  # probe_untrained: NaN since controls keep no reservoir (issue 23)


def shown_path(path: str | Path) -> str:
    """A path as pages and the terminal show it: relative to the working directory where it lies
    inside it; anything else (timm:seresnet50, a URL's //) exactly as given."""
    resolved, cwd = Path(path).resolve(), Path.cwd().resolve()
    if Path(path).is_absolute() and resolved.is_relative_to(cwd):
        return str(resolved.relative_to(cwd))
    return str(path)


def class_names(run: Run) -> list[str]:
    return list(run.meta.stats.class_names)


def model_and_data(run: Run) -> tuple[str, str]:
    """The run's model and data spec as the reports name them ("?" where the run recorded none)."""
    data = run.meta.data.spec if run.meta.data else None
    return run.meta.model or "?", data or "?"


def block_names(run: Run) -> list[str]:
    return run.blocks["block"].tolist()


def present_classes(run: Run) -> list[int]:
    """The classes with samples in the run, in label order: every class unless the data held some
    of them only (an ImageNet folder of a few classes, --classes) or a --limit left some out. The
    class pickers, defaults, chance levels and class x class figures use these."""
    k = len(class_names(run))
    return list(present_labels(run.gate_tensor(block_names(run)[0], "count").numpy().reshape(-1, k).sum(0)))


def present_means(run: Run, mean: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A block's class means [K, C] (class_mean_arrays) on the rows of the classes with samples
    [K', C], and those classes' names."""
    present, names = present_classes(run), class_names(run)
    return mean[present], [names[k] for k in present]


def onset_blocks(run: Run) -> list[str]:
    """The blocks where the run's onsets lie (those found)."""
    return [o["block"] for o in onsets(run) if o["block"] is not None]


def default_blocks(run: Run) -> list[str]:
    """The blocks the profile figures draw by default: experiments.paper.default_blocks's rule (the
    SE paper's choice of blocks) with the run's onset blocks, in depth order."""
    return _default_blocks(block_names(run), include=onset_blocks(run))


def headline(run: Run) -> pd.DataFrame:
    """The blocks table in HEADLINE_COLUMNS, those the run has."""
    return run.blocks[present(run, HEADLINE_COLUMNS)]


def check_block(run: Run, block: str) -> None:
    if block not in block_names(run):
        raise RunFolderError(f"{run.path} has no block {block!r}; blocks: {', '.join(block_names(run))}.")


def class_mean_arrays(run: Run) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per block, (mean [K, C], std [K, C]) of the gates per class; NaN rows for classes without samples.

    Read once per run (a few hundred MB at ImageNet scale) so that every later view is a slice.
    """
    try:  # pyarrow's own arrays: half the time of a DataFrame at ImageNet scale (15 million rows)
        table = pq.read_table(run.path / "class_means.parquet", columns=["block", "class", "channel", "mean", "std"],
                              read_dictionary=["block"]).unify_dictionaries()
    except (OSError, ValueError) as e:
        raise RunFolderError(f"{run.path}/class_means.parquet cannot be read: {e}.") from None
    k = len(class_names(run))
    sizes = run.blocks.set_index("block")["channels"]
    blocks = table.column("block").combine_chunks()  # one dictionary of block names, after unify_dictionaries
    names, codes = blocks.dictionary.to_pylist(), blocks.indices.to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])[: len(codes)]
    ends = np.r_[starts[1:], len(codes)]
    klass, channel, mean, std = (table.column(c).to_numpy() for c in ("class", "channel", "mean", "std"))
    out = {}
    for a, b in zip(starts, ends):
        block = names[codes[a]]
        m, s = np.full((k, sizes[block]), np.nan), np.full((k, sizes[block]), np.nan)
        m[klass[a:b], channel[a:b]] = mean[a:b]
        s[klass[a:b], channel[a:b]] = std[a:b]
        out[block] = (m, s)
    missing = set(sizes.index) - set(out)
    if missing:
        raise RunFolderError(f"{run.path}/class_means.parquet has no rows for {', '.join(sorted(missing))}.")
    return out


def class_similarity(mean: np.ndarray) -> np.ndarray:
    """[K, K] correlation of the class-mean gate profiles over channels (1 = same recalibration)."""
    centred = mean - mean.mean(1, keepdims=True)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    unit = np.divide(centred, norm, out=np.zeros_like(centred), where=norm > 0)
    return unit @ unit.T


def preferred_order(run: Run, block: str) -> np.ndarray:
    """Channel indices ordered by preferred class, most class-specific first within a class."""
    check_block(run, block)
    ch = run.channels.query("block == @block")
    return ch.sort_values(["preferred_class", "eta2"], ascending=[True, False])["channel"].to_numpy()


def heatmap_matrix(mean: np.ndarray, order: np.ndarray, max_columns: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The class x channel map: class-mean gates minus the channel's all-class mean, channels in
    `order` (preferred_order); with `max_columns`, neighbouring channels (same preferred class,
    mostly) averaged in groups so that no more than max_columns columns remain.

    mean [K, C], order [C] -> (matrix [K, G], starts [G]: each column's first position in `order`).
    """
    centred = (mean - mean.mean(0, keepdims=True))[:, order]
    channels = centred.shape[1]
    group = -(-channels // max_columns) if max_columns else 1
    starts = np.arange(0, channels, group)
    if group > 1:
        centred = np.add.reduceat(centred, starts, axis=1) / np.diff(np.append(starts, channels))
    return centred, starts


def gate_histogram(run: Run, block: str, classes: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(counts [K, C, B + 2] int64, edges [C, B + 1] float64) of one gate's stored histogram: each
    channel's B bins (GateStats: equiprobable on its first batch, so of unequal widths, some of
    zero width where the first batch tied) with an underflow (cell 0) and an overflow (cell B + 1).
    With `classes`, only their rows are read ([len(classes), C, B + 2]): a few MB instead of 160 at
    ImageNet scale."""
    check_block(run, block)
    edges = run.gate_tensor(block, "edges").double().numpy()
    if classes is None:
        return run.gate_tensor(block, "hist").long().numpy(), edges
    return np.concatenate([run.gate_tensor(block, "hist", slice(c, c + 1)).long().numpy() for c in classes]), edges


def pooled_histogram(counts: np.ndarray, edges: np.ndarray, points: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of many channels, each over its own edges, added on one common grid.

    counts [K, C, B + 2] (B bins, an under- and an overflow bin), edges [C, B + 1] -> (counts
    [K, points] float64, grid [points + 1], equal steps). Each channel's mass is spread uniformly
    inside its bins (its CDF interpolated linearly at the grid; a zero-width bin is empty); under-
    and overflow count at the channel's first and last edge. The total mass is kept exactly.
    """
    inner = edges.shape[1] - 1
    under, body, over = counts[..., 0], counts[..., 1:-1], counts[..., -1]
    grid = np.linspace(edges[:, 0].min(), edges[:, -1].max(), points + 1)
    cdf = np.concatenate([under[..., None], under[..., None] + np.cumsum(body, -1)], -1).astype(float)  # at edges
    # per channel and grid point [C, G]: the bin holding the point and the fraction of the bin below it
    i = np.clip((edges[:, :, None] <= grid[None, None, :]).sum(1) - 1, 0, inner - 1)
    low, high = np.take_along_axis(edges, i, 1), np.take_along_axis(edges, i + 1, 1)
    frac = np.clip(np.divide(grid - low, high - low, out=np.ones_like(low), where=high > low), 0, 1)
    below = np.take_along_axis(cdf, np.broadcast_to(i, cdf.shape[:1] + i.shape), 2)  # [K, C, G]
    above = np.take_along_axis(cdf, np.broadcast_to(i + 1, cdf.shape[:1] + i.shape), 2)
    f = np.where(grid < edges[:, :1], 0.0, below + frac * (above - below))
    at_grid = np.where(grid >= edges[:, -1:], (cdf[..., -1] + over)[..., None], f).sum(1)
    pooled = np.diff(at_grid, axis=1)
    pooled[:, 0] += at_grid[:, 0]  # mass at the grid's first point belongs to its first bin
    return pooled, grid


def gate_distribution(run: Run, block: str, channel: int | None = None, classes: list[int] | None = None) -> pd.DataFrame:
    """Per class and bin [bin_lo, bin_hi): the share of the class's gate values in it and the
    density, share / width (bins of unequal width: the density keeps the shape, the share does not).

    One channel: its own bins, without those of zero width (where the first batch tied; always
    empty), and its underflow and overflow cells (bin_lo -inf, bin_hi +inf; no density, NaN). The
    whole block (channel None): every channel's bins added on one grid of equal steps
    (pooled_histogram), under- and overflow at each channel's outer edges.
    """
    classes = list(range(len(class_names(run)))) if classes is None else classes
    counts, edges = gate_histogram(run, block, classes)
    if channel is not None:
        e = edges[channel]
        kept = np.r_[True, e[1:] > e[:-1], True]  # the cells: underflow, each bin of positive width, overflow
        hist, lo, hi = counts[:, channel][:, kept].astype(float), np.r_[-np.inf, e][kept], np.r_[e, np.inf][kept]
    else:
        hist, grid = pooled_histogram(counts, edges)
        lo, hi = grid[:-1], grid[1:]
    share = hist / np.maximum(hist.sum(1, keepdims=True), 1)
    width = np.broadcast_to(hi - lo, share.shape)
    density = np.divide(share, width, out=np.full_like(share, np.nan), where=np.isfinite(width) & (width > 0))
    names, bins = class_names(run), len(lo)
    return pd.DataFrame({
        "class": np.repeat(classes, bins),
        "class_name": np.repeat([names[c] for c in classes], bins),
        "bin_lo": np.tile(lo, len(classes)),
        "bin_hi": np.tile(hi, len(classes)),
        "bin_center": np.tile((lo + hi) / 2, len(classes)),
        "share": share.flatten(),
        "density": density.flatten(),
    })


def top_samples(run: Run, block: str, channel: int) -> pd.DataFrame:
    """The stored samples that open one channel most: rank, sample id, gate value."""
    check_block(run, block)
    values, ids = run.gate_tensor(block, "top_values")[channel], run.gate_tensor(block, "top_ids")[channel]
    kept = ids >= 0
    return pd.DataFrame({"rank": np.arange(int(kept.sum())) + 1, "sample_id": ids[kept].numpy(), "gate": values[kept].numpy()})


def class_drivers(
    run: Run, means: dict[str, tuple[np.ndarray, np.ndarray]], klass: int, top: int = 10
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Where one class drives the gates (schema tables class_blocks and class_channels): per block, the
    share of channels preferring it (chance 1/K' over the K' classes with samples), and the `top`
    channels over all blocks that prefer it, by how far its class mean lies above the other classes'.
    `means` is class_mean_arrays(run).
    """
    k = len(present_classes(run))
    ch = run.channels
    per_block = (
        ch.assign(prefers=ch["preferred_class"] == klass)
        .groupby("block", sort=False, observed=True)
        .agg(depth=("depth", "first"), channels=("channel", "size"), preferring=("prefers", "sum"))
        .reset_index()
        .astype({"block": str, "preferring": "int64"})
    )
    per_block["share"] = per_block["preferring"] / per_block["channels"]
    per_block["chance"] = 1 / k
    lifts = []
    for block, (mean, _) in means.items():
        others = np.nanmean(np.delete(mean, klass, axis=0), axis=0)
        lifts.append(pd.DataFrame({"block": block, "channel": np.arange(mean.shape[1]), "class_mean": mean[klass],
                                   "others_mean": others}))
    lift = pd.concat(lifts, ignore_index=True)
    lift["lift"] = lift["class_mean"] - lift["others_mean"]
    own = ch.loc[ch["preferred_class"] == klass, ["block", "channel", "eta2", "selectivity"]].astype({"block": str})
    lift = lift.merge(own, on=["block", "channel"]).nlargest(top, "lift")
    return per_block, lift.reset_index(drop=True)


def compare(runs: dict[str, Run]) -> pd.DataFrame:
    """The block tables of several runs stacked, with a `run` column, for depth curves side by side."""
    return pd.concat([run.blocks.assign(run=label) for label, run in runs.items()], ignore_index=True)


def onsets(run: Run) -> list[dict]:
    """Both onsets of the run with their rules and one line on what each means (schema.ONSETS).
    Runs made before the shape rule report the shape onset as not measured (analysis.runs.meta)."""
    onset = run.meta.onset
    found = {"block": (onset.block, onset.rule), "detectable": (onset.detectable, onset.rule_detectable)}
    labels = {"block": "onset (shape)", "detectable": "onset (detectable)"}
    return [{"key": key, "label": labels[key], "block": block, "rule": str(rule), "meaning": ONSETS[key]}
            for key, (block, rule) in found.items()]


def run_warnings(run: Run) -> list[str]:
    """What the run itself warns of (meta.json "warnings": degenerate data and the like), as text."""
    return list(run.meta.warnings)


def present(run: Run, columns: tuple[str, ...]) -> list[str]:
    """The columns of the block table that this run has (older runs lack the newer ones) and that
    are not all NaN (a control that was not collected)."""
    b = run.blocks
    return [c for c in columns if c in b and not (pd.api.types.is_float_dtype(b[c]) and b[c].isna().all())]


def summary(run: Run) -> dict:
    """The numbers a report's text states, all read from the run's block table and meta."""
    b = run.blocks
    by_excess = b.sort_values("eta2_excess")
    saturated_blocks = b.loc[saturated(b), "block"].tolist()
    found = {o["key"]: o for o in onsets(run)}
    best = b["probe_acc"].idxmax() if b["probe_acc"].notna().any() else None
    model, data = model_and_data(run)
    return {
        "model": shown_path(model),
        "data": data,
        "samples": run.meta.stats.samples,
        "classes": len(present_classes(run)),
        "blocks": len(b),
        "channels": int(b["channels"].sum()),
        "accuracy": run.meta.checkpoint.test_accuracy if run.meta.checkpoint else None,
        "onset": found["block"]["block"],
        "onset_rule": found["block"]["rule"],
        "onset_detectable": found["detectable"]["block"],
        "onset_rule_detectable": found["detectable"]["rule"],
        "most_specific": by_excess["block"].iloc[-1],
        "most_specific_eta2": float(by_excess["eta2_mean"].iloc[-1]),
        "least_specific": by_excess["block"].iloc[0],
        "least_specific_eta2": float(by_excess["eta2_mean"].iloc[0]),
        "eta2_null": float(b["eta2_null"].iloc[0]),
        "probe_chance": float(b["probe_chance"].iloc[0]),
        "probe_best": float(b["probe_acc"].max()),
        "probe_best_block": None if best is None else str(b.at[best, "block"]),
        "probe_best_perm": float(b.at[best, "probe_perm"]) if best is not None and "probe_perm" in b else None,
        "saturated": saturated_blocks,
        "saturation_rule": SATURATION_RULE,
        "warnings": run_warnings(run),
    }


def intervention_rows(run: Run) -> pd.DataFrame:
    """Every row of the run's interventions table (blocks, stages, sets, all, in the order asked)
    with its changes in points, as `se-analysis ablate` prints them, beside the block's specificity
    excess and saturated share (NaN for a group of blocks); empty without the table."""
    if not run.has_table("interventions"):
        return pd.DataFrame()
    rows = run.table("interventions").copy()
    rows["top1_pct"] = 100 * rows["acc"]
    for column in ("acc_change", "acc_change_ci_low", "acc_change_ci_high"):
        rows[column.replace("acc_change", "change_pp")] = 100 * rows[column]
    columns = ["group", "kind", "intervention", "top1_pct", "change_pp", "change_pp_ci_low", "change_pp_ci_high",
               "loss_change", "eta2_excess", "sat_high", "sat_low", "predicted_removable", "measured_removable"]
    return rows[columns].rename(columns={"group": "block"}).reset_index(drop=True)


def block_interventions(run: Run) -> pd.DataFrame:
    """The single-block rows of intervention_rows in depth order (empty without the table)."""
    rows = intervention_rows(run)
    if rows.empty:
        return rows
    rows = rows[rows["kind"] == "block"].copy()
    rows.insert(1, "depth", rows["block"].map({name: i for i, name in enumerate(run.blocks["block"])}))
    return rows.sort_values("depth", kind="stable").drop(columns="kind")
