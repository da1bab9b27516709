"""Interventions: replace the gates of chosen SE blocks during evaluation and measure the cost.

The paper removed the SE blocks of the last stage at little cost because their gates saturate.
Here the gate output `s` of any block, or group of blocks, is replaced by

* `ones`: s = 1, the block without SE;
* `mean`: the data set's mean gate per channel (keeps the average recalibration, drops the
  dependence on the input);
* `class-mean`: the mean gate of the image's true class (an oracle that keeps class information
  only);
* `shuffle`: the gates of another image of the batch (a seeded derangement, drawn per batch);

and top-1 accuracy and cross-entropy are compared with the unmodified model, with paired bootstrap
intervals over images. The mean gates come from a run folder of the same model (`se-analysis
collect`), never recomputed. Spatial gates [N, C, H, W] get the channel vector at every position.
One pass over the data: each batch runs the plain model once, then every (group, intervention).

Table `interventions`, one row per (group, intervention), groups in the order asked:

* `group`: a block name, `SE_{stage}_*` for a stage, `all`, or blocks joined by `+`; `kind`:
  block, stage, all or set; `blocks`: its blocks, comma-separated; `n_blocks`.
* `intervention`; `samples`: images evaluated.
* `acc_base`, `acc`: top-1 accuracy of the plain and the intervened model; `acc_change` = acc -
  acc_base, with `acc_change_ci_low`, `acc_change_ci_high` its paired bootstrap 95% interval; where
  no image changed its correctness the bootstrap has no spread, and the interval is the exact one of
  zero changes among the images instead (`unchanged_bound`), never [0, 0].
* `loss_base`, `loss`, `loss_change`, `loss_change_ci_low`, `loss_change_ci_high`: the same for
  the mean cross-entropy.
* `sat_high`, `sat_low`, `eta2_excess`: the block's row of the run's blocks table (NaN for a group
  of several blocks).
* `predicted_removable`: every block of the group is saturated or class-agnostic (see
  `predicted_removable`); `measured_removable`: the accuracy drop is below `REMOVABLE_DROP` with
  95% confidence (acc_change_ci_low > -REMOVABLE_DROP).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from analysis.capture.collect import model_device
from analysis.capture.hooks import ForwardHooks
from analysis.data.labels import check_labels
from analysis.errors import DataError, InterventionError
from analysis.experiments.replay import Prefix
from analysis.measures.saturation import saturated
from analysis.capture.gates import Gate
from analysis.capture.names import stage_group, stage_of
from analysis.models.precision import autocast
from analysis.options import Range
from analysis.runs.matching import run_gates
from analysis.runs.folder import Run

INTERVENTIONS = ("ones", "mean", "class-mean", "shuffle")
DEFAULT_GROUPS = "block,stage,all"
REMOVABLE_DROP = 0.01  # measured removable: accuracy drops by less than this (1 point), 95% sure
CI_LEVEL = 0.95


def stages(names: list[str]) -> dict[str, list[str]]:
    """{"SE_{stage}_*": its blocks} in forward order, for the names of the form SE_{stage}_{block}."""
    found: dict[str, list[str]] = {}
    for name in names:
        if (stage := stage_of(name)) is not None:
            found.setdefault(stage_group(stage), []).append(name)
    return found


def block_groups(gates: list[Gate], spec: str = DEFAULT_GROUPS) -> list[tuple[str, str, list[str]]]:
    """(group name, kind, block names) for a comma-separated `spec` of `block` (each block alone),
    `stage` (the blocks of each stage together; needs SE_{stage}_{block} names), one stage by name
    (`SE_5_*`), `all` (every block at once) and explicit sets of blocks joined by `+`. Raises
    InterventionError."""
    names = [g.name for g in gates]
    by_stage = stages(names)
    groups: list[tuple[str, str, list[str]]] = []
    for item in (part.strip() for part in spec.split(",")):
        if item == "block":
            groups += [(name, "block", [name]) for name in names]
        elif item == "stage":
            groups += [(stage, "stage", blocks) for stage, blocks in by_stage.items()]
        elif item in by_stage:
            groups.append((item, "stage", by_stage[item]))
        elif item == "all":
            groups.append(("all", "all", names))
        elif item and all(b in names for b in item.split("+")):
            groups.append((item, "set", item.split("+")))
        else:
            raise InterventionError(
                f"group {item!r} is neither block, stage, a stage of this model ({', '.join(by_stage) or 'none'}), "
                f"all nor blocks of this model joined by + (e.g. {'+'.join(names[-2:])})."
            )
    return groups


def run_gate_means(run: Run, gates: list[Gate]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per gate, (data set mean [C], class means [K, C]) in float64 from the run's class_means
    table. A class without images in the run gets NaN class means. The data set mean weighs each
    class mean by its count, so it is the mean over all the run's images."""
    k = run.meta.stats.config.num_classes
    channels = {g.name: g.channels for g in gates}
    means = {}
    for name, rows in run.class_means.groupby("block", observed=True, sort=False):
        classes = torch.tensor(rows["class"].to_numpy(np.int64))
        class_mean = torch.full((k, channels[str(name)]), float("nan"), dtype=torch.float64)
        channel = torch.tensor(rows["channel"].to_numpy(np.int64))
        class_mean[classes, channel] = torch.tensor(rows["mean"].to_numpy(np.float64))
        count = torch.zeros(k, dtype=torch.float64)
        count[classes] = torch.tensor(rows["count"].to_numpy(np.float64))
        means[str(name)] = ((class_mean.nan_to_num() * count[:, None]).sum(0) / count.sum(), class_mean)
    return means


@dataclass(frozen=True)
class Intervention:
    """The gates of `blocks` replaced by `how`, one of INTERVENTIONS."""

    blocks: frozenset[str]
    how: str


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """[n] int64: the image whose gates each image takes under `shuffle`: in a random order of the
    batch, each takes the gates of the one before it, so none keeps its own (for n >= 2)."""
    order = torch.randperm(n, generator=generator)
    taken = torch.empty_like(order)
    taken[order] = order.roll(1)
    return taken


class GateReplacement(ForwardHooks):
    """Forward hooks that replace the outputs of the gates of `intervention.blocks` by
    `intervention.how` in every pass inside the context; the other gates pass unchanged (a hook
    returning None keeps the output).

        with GateReplacement(model, gates, means, Intervention(frozenset({"SE_4_3"}), "mean")):
            logits = model(x)

    `means`: per gate (data set mean [C], class means [K, C]) on the model's device, as
    `run_gate_means` gives them (read by mean and class-mean); `labels` [N]: the images' true
    classes (class-mean); `order` [N]: the image whose gates each image takes (shuffle, see
    `derangement`). Raises InterventionError when the intervention lacks what it reads.
    """

    def __init__(
        self, model: nn.Module, gates: list[Gate], means: dict[str, tuple[torch.Tensor, torch.Tensor]],
        intervention: Intervention, *, labels: torch.Tensor | None = None, order: torch.Tensor | None = None,
    ) -> None:
        super().__init__(model, gates, self._swap)
        how = intervention.how
        if how not in INTERVENTIONS:
            raise InterventionError(f"intervention {how!r} is not one of {', '.join(INTERVENTIONS)}.")
        needs = {"class-mean": ("labels", labels), "shuffle": ("order", order)}
        if how in needs and needs[how][1] is None:
            raise InterventionError(f"the intervention {how} needs the batch's {needs[how][0]}.")
        missing = [name for name in intervention.blocks if how in ("mean", "class-mean") and name not in means]
        if missing:
            raise InterventionError(f"the intervention {how} needs the run's mean gates of {', '.join(sorted(missing))}.")
        self.intervention, self.means, self.labels, self.order = intervention, means, labels, order

    def _swap(self, gate: Gate, output: Any) -> torch.Tensor | None:
        return self.replace(gate, output) if gate.name in self.intervention.blocks else None

    def replace(self, gate: Gate, out: torch.Tensor) -> torch.Tensor:
        """The gate output `out` [N, C, ...] under the intervention, same shape and dtype."""
        how = self.intervention.how
        if how == "ones":
            return torch.ones_like(out)
        if how == "shuffle":
            return out[self.order]
        mean, class_mean = self.means[gate.name]
        vectors = mean[None] if how == "mean" else class_mean[self.labels]
        if out.shape[1] != vectors.shape[1]:
            raise InterventionError(f"gate {gate.name} has {out.shape[1]} channels, its run means {vectors.shape[1]}.")
        return torch.empty_like(out).copy_(vectors.view(*vectors.shape, *[1] * (out.dim() - 2)))


def bootstrap_ci(
    values: np.ndarray, *, resamples: int = 1000, seed: int = 0, level: float = CI_LEVEL
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the column means of `values` [N, S], resampling rows.

    Every column sees the same resamples, so rows of per-image differences stay paired.
    """
    rng = np.random.default_rng(seed)
    n = len(values)
    means = np.empty((resamples, values.shape[1]))
    for start in range(0, resamples, 64):  # 64 resamples at a time: memory 64 x N counts
        b = min(64, resamples - start)
        picks = rng.integers(0, n, (b, n)) + n * np.arange(b)[:, None]
        counts = np.bincount(picks.ravel(), minlength=b * n).reshape(b, n)
        means[start : start + b] = counts @ values / n
    tail = (1 - level) / 2
    return np.quantile(means, tail, axis=0), np.quantile(means, 1 - tail, axis=0)


def paired_ci(diffs: np.ndarray, *, resamples: int, seed: int, correctness: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Paired bootstrap 95% intervals of the column means of per-image differences `diffs` [N, S]
    (bootstrap_ci); the first `correctness` columns (all by default) are changes of correctness, and
    where no image changed, their interval is the exact one of zero changes (unchanged_bound), never [0, 0]."""
    low, high = bootstrap_ci(diffs, resamples=resamples, seed=seed)
    unchanged = np.flatnonzero(~diffs[:, :correctness].any(0))
    low[unchanged], high[unchanged] = -unchanged_bound(len(diffs)), unchanged_bound(len(diffs))
    return low, high


def unchanged_bound(images: int, level: float = CI_LEVEL) -> float:
    """The largest share of images that may change their correctness, at `level`, when none of
    `images` did: the upper end of the exact (Clopper-Pearson) interval of 0 events in n,
    1 - ((1 - level) / 2) ** (1 / n). An accuracy change lies within +- this share."""
    return 1.0 - ((1.0 - level) / 2) ** (1.0 / images)


def predicted_removable(blocks: pd.DataFrame, min_excess: float) -> pd.Series:
    """Per block name, the paper's prediction that its gates can be replaced at little cost: the
    block is saturated (`measures.saturation.saturated`: most gates are near 1, so SE barely rescales) or
    class-agnostic (`eta2_excess` <= min_excess, the onset rule's effect size). A hypothesis that
    the measured columns test: a class-agnostic gate can still rescale channels per image."""
    b = blocks.set_index("block")
    return saturated(b) | (b["eta2_excess"] <= min_excess)


def _known_classes(means: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """[K] bool on the CPU: the classes whose class-mean gates the run holds in every block (those it has images of)."""
    return torch.stack([~cm.isnan().any(1) for _, cm in means.values()]).all(0).cpu()


def _require_known(run: Run, known: torch.Tensor, labels: torch.Tensor) -> None:
    """Class-mean gates need the run's means of every class in the batch (labels on the CPU, as from a
    DataLoader; labels already on a GPU are trusted, as by check_labels); a class subset's run has
    the means of its own classes only."""
    unseen = labels[~known[labels]] if labels.device.type == "cpu" else labels[:0]
    if unseen.numel():
        raise InterventionError(
            f"{run.path} has no images of class {run.meta.stats.class_names[int(unseen[0])]!r}, "
            "so its class-mean gates are unknown; ablate on data of the run's classes (--classes)."
        )


def ablate(
    model: nn.Module,
    loader: Iterable,
    run: Run,
    *,
    groups: str = DEFAULT_GROUPS,
    interventions: Sequence[str] = INTERVENTIONS,
    amp: str | None = None,
    resamples: Annotated[int, Range(1)] = 1000,
    seed: int = 0,
    progress: bool = True,
    total: int | None = None,
) -> pd.DataFrame:
    """The `interventions` table (module docstring) of `model` over `loader`'s (x, y, ...) batches.

    `run` is a run folder of the same model; `groups` as in `block_groups`; `amp` None, "bf16" or
    "fp16"; `seed` fixes the shuffles and the bootstrap. The model should be in eval mode.
    """
    if not interventions or any(i not in INTERVENTIONS for i in interventions):
        raise InterventionError(
            f"interventions must be some of {', '.join(INTERVENTIONS)}, not {', '.join(interventions) or 'none'}."
        )
    device = model_device(model)
    precision = autocast(device, amp)
    gates = run_gates(run, model)
    group_list = block_groups(gates, groups)
    settings = [Intervention(frozenset(blocks), how) for _, _, blocks in group_list for how in interventions]
    k = run.meta.stats.config.num_classes
    means = {name: (m.float().to(device), c.float().to(device)) for name, (m, c) in run_gate_means(run, gates).items()}
    known = _known_classes(means)
    generator = torch.Generator().manual_seed(seed)
    prefix = Prefix(model, gates)
    correct, losses = [], []
    with (
        torch.inference_mode(),
        tqdm(total=total, unit="img", disable=not progress, file=sys.stderr, desc="ablate") as bar,
    ):
        for x, y, *_ in loader:
            check_labels(y, k)
            if "class-mean" in interventions:
                _require_known(run, known, y)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            order = derangement(len(y), generator).to(device)
            with precision, prefix.recorded():
                outcomes = [model(x).float()]  # the plain model, its modules recorded
            if outcomes[0].shape[1] != k:
                raise InterventionError(f"the model has {outcomes[0].shape[1]} outputs, the run's data {k} classes.")
            for intervention in settings:  # each replays what ran before its first changed gate
                with (precision, prefix.replayed(prefix.first(intervention.blocks)),
                      GateReplacement(model, gates, means, intervention, labels=y, order=order)):
                    outcomes.append(model(x).float())
            correct.append(torch.stack([logits.argmax(1) == y for logits in outcomes]))
            losses.append(torch.stack([F.cross_entropy(logits, y, reduction="none") for logits in outcomes]))
            bar.update(len(y))
    if not correct:
        raise DataError("the data source yielded no samples.")
    correct_all = torch.cat(correct, 1).double().cpu().numpy()
    loss_all = torch.cat(losses, 1).double().cpu().numpy()
    return _table(run, group_list, interventions, correct_all, loss_all, resamples, seed)


def _table(
    run: Run,
    groups: list[tuple[str, str, list[str]]],
    interventions: Sequence[str],
    correct: np.ndarray,
    loss: np.ndarray,
    resamples: int,
    seed: int,
) -> pd.DataFrame:
    """Rows of the interventions table from per-image correctness and loss [1 + S, N], row 0 plain."""
    s = len(correct) - 1
    diffs = np.concatenate([correct[1:] - correct[0], loss[1:] - loss[0]]).T  # [N, 2S]
    low, high = paired_ci(diffs, resamples=resamples, seed=seed, correctness=s)
    blocks = run.blocks.set_index("block")
    removable = predicted_removable(run.blocks, run.meta.onset.min_excess)
    settings = [(group, how) for group in groups for how in interventions]
    rows = []
    for i, ((name, kind, members), how) in enumerate(settings):
        single = blocks.loc[members[0]] if len(members) == 1 else None
        rows.append(
            {
                "group": name, "kind": kind, "blocks": ",".join(members), "n_blocks": len(members),
                "intervention": how, "samples": correct.shape[1],
                "acc_base": correct[0].mean(), "acc": correct[i + 1].mean(), "acc_change": diffs[:, i].mean(),
                "acc_change_ci_low": low[i], "acc_change_ci_high": high[i],
                "loss_base": loss[0].mean(), "loss": loss[i + 1].mean(), "loss_change": diffs[:, s + i].mean(),
                "loss_change_ci_low": low[s + i], "loss_change_ci_high": high[s + i],
                **{c: float(single[c]) if single is not None else np.nan for c in ("sat_high", "sat_low", "eta2_excess")},
                "predicted_removable": bool(removable[members].all()),
            }
        )
    table = pd.DataFrame(rows)
    table["measured_removable"] = table["acc_change_ci_low"] > -REMOVABLE_DROP
    return table


def format_interventions(table: pd.DataFrame) -> str:
    """The interventions table as printed by `se-analysis ablate`: changes in percentage points."""
    first = table.iloc[0]
    pp = 100 * table[["acc_change", "acc_change_ci_low", "acc_change_ci_high"]]
    shown = pd.DataFrame(
        {
            "group": table["group"],
            "intervention": table["intervention"],
            "top1_%": (100 * table["acc"]).map("{:.2f}".format),
            "change_pp": pp["acc_change"].map("{:+.2f}".format),
            "95%_CI_pp": [f"[{lo:+.2f}, {hi:+.2f}]" for lo, hi in zip(pp["acc_change_ci_low"], pp["acc_change_ci_high"])],
            "loss_change": table["loss_change"].map("{:+.4f}".format),
            "predicted_removable": table["predicted_removable"],
            "measured_removable": table["measured_removable"],
        }
    )
    head = (
        f"plain model: top-1 {100 * first['acc_base']:.2f}%, loss {first['loss_base']:.4f} on {first['samples']} images; "
        f"changes with paired bootstrap {CI_LEVEL:.0%} intervals"
    )
    with pd.option_context("display.width", 200, "display.max_rows", 1000):
        return f"{head}\n{shown.to_string(index=False)}"
