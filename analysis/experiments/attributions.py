"""Attributions: how much each gate channel contributes to the class logit, per class.

A class-specific gate channel may drive the decision or be ignored downstream; specificity alone
cannot tell. For each image, captum attributes the logit of the predicted (or true) class to every
gate channel:

* `grad-x-act` (default): LayerGradientXActivation on all gate modules in one call, gradient of
  the logit with respect to the gate output times the gate output;
* `ig`: LayerIntegratedGradients, one gate at a time (captum refuses layers that feed each other),
  from the gates of an all-zero input image to the image's own.

Spatial gates [N, C, H, W] are summed over positions first, so a channel's attribution is its
total. `AttributionSums` streams per class and channel float64 sums of the attributions and of
their absolute values on the model's device: memory does not grow with the data.

Table `attributions`, one row per (block, class with images, channel); `class` is the image's true
class, whichever logit is attributed: block, class, class_name, channel, `mean_attr` and
`mean_abs_attr` (mean over the class's images of the attribution and of its absolute value),
`count` (images of the class).

Table `attribution_blocks`, one row per block, with the run's channels table:

* `block`, `depth`, `channels`;
* `mean_attr`, `mean_abs_attr`: mean over all images of the block's attribution summed over its
  channels, and of the channels' absolute attributions summed; `share_abs_attr`: the block's share
  of mean_abs_attr over all blocks;
* `eta2_mean`: mean channel eta2 (class-specificity) from the run; `eta2_weighted`: the same
  weighted by each channel's mean |attribution|, so eta2_weighted > eta2_mean means the channels
  the decision uses are the more class-specific ones ("specific and used"), and below it that the
  class-specific channels are left unused;
* `attr_eta2_corr`: Spearman correlation over channels between eta2 and mean |attribution| (NaN
  when either is constant).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Annotated

import numpy as np
import pandas as pd
import torch
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients
from torch import nn
from tqdm import tqdm

from analysis.capture.collect import model_device
from analysis.options import Range
from analysis.errors import DataError, OptionError
from analysis.capture.gates import Gate, unwrap
from analysis.data.labels import check_labels, present_labels
from analysis.runs.matching import run_gates
from analysis.runs.folder import Run

METHODS = ("grad-x-act", "ig")
TARGETS = ("pred", "true")


class AttributionSums:
    """Per gate, float64 sums over images of attributions and of |attributions| per (class,
    channel), and images per class, on one device. `update` never synchronises with the host."""

    def __init__(self, gates: list[Gate], num_classes: int, device: torch.device | str = "cpu") -> None:
        self.gates, self.num_classes = list(gates), num_classes
        dev = torch.device(device)
        self.count = torch.zeros(num_classes, dtype=torch.int64, device=dev)
        self.sum = {g.name: torch.zeros(num_classes, g.channels, dtype=torch.float64, device=dev) for g in gates}
        self.abs_sum = {g.name: torch.zeros_like(self.sum[g.name]) for g in gates}

    def update(self, labels: torch.Tensor, attributions: list[torch.Tensor]) -> None:
        """Add a batch: labels [N], and per gate (in `gates` order) attributions [N, C] or
        [N, C, ...], the latter summed over positions per channel."""
        labels = labels.to(self.count.device, torch.int64)
        self.count.index_add_(0, labels, torch.ones_like(labels))
        for gate, a in zip(self.gates, attributions, strict=True):
            a = a.detach().double()
            a = a.flatten(2).sum(2) if a.dim() > 2 else a
            self.sum[gate.name].index_add_(0, labels, a)
            self.abs_sum[gate.name].index_add_(0, labels, a.abs())

    def table(self, class_names: list[str]) -> pd.DataFrame:
        """The `attributions` table (module docstring), blocks in gate order."""
        count = self.count.cpu().numpy()
        present = np.asarray(present_labels(count), dtype=np.int64)
        parts = []
        for gate in self.gates:
            c, k = gate.channels, len(present)
            n = count[present].astype(np.float64)[:, None]
            parts.append(
                pd.DataFrame(
                    {
                        "block": gate.name,
                        "class": np.repeat(present, c),
                        "class_name": np.repeat(np.asarray(class_names, dtype=object)[present], c),
                        "channel": np.tile(np.arange(c), k),
                        "mean_attr": (self.sum[gate.name].cpu().numpy()[present] / n).ravel(),
                        "mean_abs_attr": (self.abs_sum[gate.name].cpu().numpy()[present] / n).ravel(),
                        "count": np.repeat(count[present], c),
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)


def gate_attributions(
    model: nn.Module,
    layers: list[nn.Module],
    x: torch.Tensor,
    target: torch.Tensor,
    method: str = "grad-x-act",
    steps: int = 32,
) -> list[torch.Tensor]:
    """Per gate module in `layers`, the attribution of logit `target` [N] to its output [N, C, ...]."""
    if method == "grad-x-act":
        return LayerGradientXActivation(model, layers).attribute(x, target=target)
    if method == "ig":
        return [
            LayerIntegratedGradients(model, layer).attribute(x, target=target, n_steps=steps, internal_batch_size=len(x))
            for layer in layers
        ]
    raise OptionError(f"method must be one of {', '.join(METHODS)}, not {method!r}.")


def block_summary(attributions: pd.DataFrame, channels: pd.DataFrame) -> pd.DataFrame:
    """The `attribution_blocks` table (module docstring) from the `attributions` table and a
    run's channels table (block, depth, channel, eta2)."""
    a = attributions.assign(
        total=attributions["mean_attr"] * attributions["count"],
        abs_total=attributions["mean_abs_attr"] * attributions["count"],
    )
    per_channel = a.groupby(["block", "channel"], sort=False)[["total", "abs_total", "count"]].sum().reset_index()
    per_channel["mean_attr"] = per_channel["total"] / per_channel["count"]
    per_channel["mean_abs_attr"] = per_channel["abs_total"] / per_channel["count"]
    eta2 = channels[["block", "depth", "channel", "eta2"]].astype({"block": str})
    merged = per_channel.merge(eta2, on=["block", "channel"], how="left", validate="one_to_one")
    rows = []
    for block, ch in merged.groupby("block", sort=False):
        w = ch["mean_abs_attr"]
        rows.append(
            {
                "block": block,
                "depth": int(ch["depth"].iloc[0]),
                "channels": len(ch),
                "mean_attr": ch["mean_attr"].sum(),
                "mean_abs_attr": w.sum(),
                "eta2_mean": ch["eta2"].mean(),
                "eta2_weighted": (w * ch["eta2"]).sum() / w.sum() if w.sum() > 0 else np.nan,
                "attr_eta2_corr": ch["eta2"].rank().corr(w.rank()),  # Spearman; NaN, unwarned, if one is constant
            }
        )
    table = pd.DataFrame(rows)
    table.insert(5, "share_abs_attr", table["mean_abs_attr"] / table["mean_abs_attr"].sum())
    return table


def attribute(
    model: nn.Module,
    loader: Iterable,
    run: Run,
    *,
    method: str = "grad-x-act",
    target: str = "pred",
    steps: Annotated[int, Range(1)] = 32,
    progress: bool = True,
    total: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(attributions, attribution_blocks) tables of `model` over `loader`'s (x, y, ...) batches.

    `run` is a run folder of the same model; `target` "pred" attributes the predicted class's logit,
    "true" the true class's; `steps` is the number of integrated-gradient steps. The model should
    be in eval mode; attribution runs in float32 with gradients, batch by batch on its device.
    """
    if target not in TARGETS:
        raise OptionError(f"target must be one of {', '.join(TARGETS)}, not {target!r}.")
    gates = run_gates(run, model)
    modules = dict(unwrap(model).named_modules())
    layers = [modules[g.path] for g in gates]
    k = run.meta.stats.config.num_classes
    device = model_device(model)
    sums = AttributionSums(gates, k, device)
    seen = 0
    with tqdm(total=total, unit="img", disable=not progress, file=sys.stderr, desc="attribute") as bar:
        for x, y, *_ in loader:
            check_labels(y, k)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if target == "pred":
                with torch.no_grad():
                    goal = model(x).argmax(1)
            else:
                goal = y
            sums.update(y, gate_attributions(model, layers, x, goal, method, steps))
            seen += len(y)
            bar.update(len(y))
    if not seen:
        raise DataError("the data source yielded no samples.")
    table = sums.table(list(run.meta.stats.class_names))
    return table, block_summary(table, run.channels)
