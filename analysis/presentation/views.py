"""What the dashboard and the reports show, read from a run: small tables and matrices per view.

Both front ends call these and only draw; nothing here recomputes the run's statistics. Each
function reads just what one view needs (one block's class means, one gate's histogram), so a view
of an ImageNet-scale run stays fast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.errors import RunFolderError
from analysis.measures.saturation import SATURATION_RULE, saturated
from analysis.runs.folder import Run

PAPER_BLOCKS = ("SE_2_3", "SE_3_4", "SE_4_6", "SE_5_1", "SE_5_2", "SE_5_3")  # the SE paper's Fig. 6


def class_names(run: Run) -> list[str]:
    return list(run.meta["stats"]["class_names"])


def block_names(run: Run) -> list[str]:
    return run.blocks["block"].tolist()


def spread_out(items: list, n: int) -> list:
    """n items evenly spaced over the list (all of them if there are at most n)."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def default_blocks(run: Run, n: int = 6) -> list[str]:
    """The paper's blocks where the run has them, else n blocks spread over the depth."""
    names = block_names(run)
    paper = [b for b in PAPER_BLOCKS if b in names]
    return paper if len(paper) >= 3 else spread_out(names, n)


def check_block(run: Run, block: str) -> None:
    if block not in block_names(run):
        raise RunFolderError(f"{run.path} has no block {block!r}; blocks: {', '.join(block_names(run))}.")


def class_mean_arrays(run: Run) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per block, (mean [K, C], std [K, C]) of the gates per class; NaN rows for classes without samples.

    Read once per run (a few hundred MB at ImageNet scale) so that every later view is a slice.
    """
    try:
        table = pd.read_parquet(run.path / "class_means.parquet", columns=["block", "class", "channel", "mean", "std"])
    except (OSError, ValueError) as e:
        raise RunFolderError(f"{run.path}/class_means.parquet cannot be read: {e}.") from None
    k = len(class_names(run))
    sizes = run.blocks.set_index("block")["channels"]
    codes = table["block"].astype("category")
    starts = np.flatnonzero(np.r_[True, codes.cat.codes.to_numpy()[1:] != codes.cat.codes.to_numpy()[:-1]])
    ends = np.r_[starts[1:], len(table)]
    klass, channel = table["class"].to_numpy(), table["channel"].to_numpy()
    mean, std = table["mean"].to_numpy(), table["std"].to_numpy()
    out = {}
    for a, b in zip(starts, ends):
        block = codes.iloc[a]
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


def gate_distribution(run: Run, block: str, channel: int | None = None, classes: list[int] | None = None) -> pd.DataFrame:
    """Per class, the share of gate values in each histogram bin (one channel, or the whole block)."""
    check_block(run, block)
    bins = run.meta["stats"]["config"]["bins"]
    k = len(class_names(run))
    hist = run.gate_tensor(block, "hist").view(k, -1, bins + 2)[..., 1:-1]  # without the under/overflow cells
    hist = hist[:, channel] if channel is not None else hist.sum(1, dtype=hist.dtype)
    # bins span each channel's own range: real gate values for one channel, the position in the range for a block
    lo, hi = (float(run.gate_tensor(block, f)[channel]) for f in ("edge_lo", "edge_hi")) if channel is not None else (0.0, 1.0)
    classes = list(range(k)) if classes is None else classes
    counts = hist[classes].double().numpy()
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    names = class_names(run)
    return pd.DataFrame({
        "class": np.repeat(classes, bins),
        "class_name": np.repeat([names[c] for c in classes], bins),
        "bin_center": np.tile(lo + (hi - lo) * (np.arange(bins) + 0.5) / bins, len(classes)),
        "share": share.flatten(),
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
    """Where one class drives the gates: per block, the share of channels preferring it (chance 1/K),
    and its `top` channels over all blocks by how far its class mean lies above the other classes'.
    `means` is class_mean_arrays(run).
    """
    k = len(class_names(run))
    ch = run.channels
    per_block = (
        ch.assign(prefers=ch["preferred_class"] == klass)
        .groupby("block", sort=False, observed=True)
        .agg(depth=("depth", "first"), channels=("channel", "size"), preferring=("prefers", "sum"))
        .reset_index()
    )
    per_block["share"] = per_block["preferring"] / per_block["channels"]
    per_block["chance"] = 1 / k
    lifts = []
    for block, (mean, _) in means.items():
        others = np.nanmean(np.delete(mean, klass, axis=0), axis=0)
        lifts.append(pd.DataFrame({"block": block, "channel": np.arange(mean.shape[1]), "mean": mean[klass], "others": others}))
    lift = pd.concat(lifts, ignore_index=True)
    lift["lift"] = lift["mean"] - lift["others"]
    lift = lift.nlargest(top, "lift").merge(
        ch[["block", "channel", "eta2", "selectivity", "preferred_class_name"]].astype({"block": str}), on=["block", "channel"]
    )
    return per_block, lift.sort_values("lift", ascending=False).reset_index(drop=True)


def compare(runs: dict[str, Run]) -> pd.DataFrame:
    """The block tables of several runs stacked, with a `run` column, for depth curves side by side."""
    return pd.concat([run.blocks.assign(run=label) for label, run in runs.items()], ignore_index=True)


def summary(run: Run) -> dict:
    """The numbers a report's text states, all read from the run's block table and meta."""
    b = run.blocks
    by_excess = b.sort_values("eta2_excess")
    saturated_blocks = b.loc[saturated(b), "block"].tolist()
    meta = run.meta
    return {
        "model": str(meta.get("model", "?")),
        "data": meta.get("data", {}).get("spec", "?"),
        "samples": int(meta["stats"]["samples"]),
        "classes": len(class_names(run)),
        "blocks": len(b),
        "channels": int(b["channels"].sum()),
        "accuracy": (meta.get("checkpoint") or {}).get("test_accuracy"),
        "onset": run.onset,
        "onset_rule": meta["onset"]["rule"],
        "most_specific": by_excess["block"].iloc[-1],
        "most_specific_eta2": float(by_excess["eta2_mean"].iloc[-1]),
        "least_specific": by_excess["block"].iloc[0],
        "least_specific_eta2": float(by_excess["eta2_mean"].iloc[0]),
        "eta2_null": float(b["eta2_null"].iloc[0]),
        "probe_chance": float(b["probe_chance"].iloc[0]),
        "probe_best": float(b["probe_acc"].max()),
        "saturated": saturated_blocks,
        "saturation_rule": SATURATION_RULE,
    }


def block_interventions(run: Run) -> pd.DataFrame:
    """The single-block rows of the run's interventions table in depth order, changes in points,
    beside the block's specificity excess and saturated share (empty without the table)."""
    if not run.has_table("interventions"):
        return pd.DataFrame()
    table = run.table("interventions")
    rows = table[table["kind"] == "block"].copy()
    depth = {name: i for i, name in enumerate(run.blocks["block"])}
    rows["depth"] = rows["group"].map(depth)
    for column in ("acc_change", "acc_change_ci_low", "acc_change_ci_high"):
        rows[column.replace("acc_change", "change_pp")] = 100 * rows[column]
    columns = ["group", "depth", "intervention", "change_pp", "change_pp_ci_low", "change_pp_ci_high",
               "loss_change", "eta2_excess", "sat_high", "sat_low", "predicted_removable", "measured_removable"]
    return rows.sort_values("depth", kind="stable")[columns].rename(columns={"group": "block"})
