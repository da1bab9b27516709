"""Per-channel interventions: each gate channel replaced alone, and what every class loses.

    table = channel_ablate(model, loader, run, top=8)        # table `channel_interventions`
    agreement = channel_agreement(table, run)                # table `channel_agreement`

A block's gates replaced by their mean cost at most a fraction of a point on the shipped network,
yet single units can matter to single classes (Zhou et al. 2018, Morcos et al. 2018). Here each
chosen channel c of each block is replaced alone, by the run's mean gate of c (`mean`, keeping the
average recalibration) or by 1 (`ones`, the channel without SE), and the accuracy of every class is
compared with the plain network's on the same images, with a paired bootstrap interval over the
class's images (the exact zero-change interval where no image changed). `channel_agreement` then
asks, per block, whether a channel's class preference says which class loses
(analysis.measures.channel_use), against a null that shuffles channels.

One pass over the data serves every intervention: per batch the plain network runs once; then for
each block, channels are taken M at a time (`copies`): the batch is repeated M times and in copy j
only channel c_j of the gate is replaced (ChannelReplacement), so one forward of M * N images
serves M interventions, with the per-call overhead of a forward paid once. The cost is about one
forward of the network per chosen channel and intervention, per image (bench/channel_ablate.py).

Table `channel_interventions`, one row per (block, channel, intervention, class with images):
`block`, `channel`, `intervention` (mean, ones), `class`, `class_name`, `images` (of the class);
`acc_base`, `acc`: the class's top-1 accuracy of the plain and the intervened network; `acc_change`
= acc - acc_base with `acc_change_ci_low`, `acc_change_ci_high`, its paired bootstrap 95% interval
over the class's images (the exact zero-change interval where no image changed, see `paired_ci`).

Table `channel_agreement`, one row per (block, intervention): `channels` intervened on,
`channels_changed` (those that changed some class's accuracy; the others say nothing of which class
loses), and three statistics (analysis.measures.channel_use), each with its null over `shuffles`
shufflings of the channels' loss rows within the block (`_null` its mean, `_null_q95` its 95th
percentile, `_p` the one-sided permutation p-value): `preference_rho`, the mean over changed
channels of Spearman's correlation across classes of the channel's class preference (class-mean
gate minus the mean over classes) and each class's accuracy loss; `matched_share`, the share of
changed channels whose preferred class loses most (beside `matched_chance`, 1 / classes);
`selectivity_rho`, Spearman's correlation across channels of the class selectivity index and how
much of the loss falls on one class.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from analysis.capture.collect import model_device
from analysis.capture.gates import Gate
from analysis.capture.hooks import ForwardHooks
from analysis.data.labels import check_labels
from analysis.errors import DataError, InterventionError
from analysis.experiments.interventions import paired_ci, run_gate_means
from analysis.measures.channel_use import (matched_share, null_p, preference_agreement, selectivity_agreement,
                                           shuffled_null)
from analysis.models.precision import autocast
from analysis.options import Range
from analysis.runs.folder import Run
from analysis.runs.matching import run_gates

CHANNEL_INTERVENTIONS = ("mean", "ones")
CHANNEL_MEASURES = ("eta2", "selectivity", "class_mod", "mi_bits")  # channels-table columns `top` can rank by
COPIES = 16  # copies of a batch per pass: channels intervened on together


class ChannelReplacement(ForwardHooks):
    """Forward hooks for a batch repeated once per channel of `channels` [M]: in copy j only channel
    `channels[j]` of the gate `block` is replaced, by its run mean (`how` mean; `mean` [C], on the
    model's device) or by 1 (ones); every other gate and channel passes.

        with ChannelReplacement(model, gates, block, channels, "mean", mean):
            logits = model(x.repeat(m, 1, 1, 1))     # [M * N, K]: copy j has channels[j] replaced
    """

    def __init__(self, model: nn.Module, gates: list[Gate], block: str, channels: torch.Tensor, how: str,
                 mean: torch.Tensor) -> None:
        if how not in CHANNEL_INTERVENTIONS:
            raise InterventionError(f"a channel's intervention is one of {', '.join(CHANNEL_INTERVENTIONS)}, not {how!r}.")
        super().__init__(model, gates, self._swap)
        self.block, self.channels, self.value = block, channels, torch.ones_like(mean) if how == "ones" else mean

    def _swap(self, gate: Gate, out: torch.Tensor) -> torch.Tensor | None:
        if gate.name != self.block:
            return None
        m = len(self.channels)
        chosen = torch.zeros(m, out.shape[1], dtype=torch.bool, device=out.device)
        chosen[torch.arange(m, device=out.device), self.channels.to(out.device)] = True
        chosen = chosen.repeat_interleave(out.shape[0] // m, dim=0)  # [M * N, C]: copy j's rows, its channel
        trailing = [1] * (out.dim() - 2)
        value = self.value.to(out.dtype).view(1, -1, *trailing)
        return torch.where(chosen.view(*chosen.shape, *trailing), value, out)


def chosen_channels(run: Run, gates: list[Gate], top: int | None, by: str) -> dict[str, np.ndarray]:
    """Per block, the channels to intervene on: all of them, or the `top` of each block by the
    channels-table column `by` (largest first; NaN last), in channel order."""
    if by not in CHANNEL_MEASURES:
        raise InterventionError(f"channels are ranked by one of {', '.join(CHANNEL_MEASURES)}, not {by!r}.")
    if top is not None and top < 1:
        raise InterventionError(f"--top must be at least 1, not {top}.")
    channels = run.channels
    chosen = {}
    for gate in gates:
        rows = channels[channels["block"] == gate.name]
        if top is not None:
            rows = rows.sort_values(by, ascending=False, na_position="last", kind="stable").head(top)
        chosen[gate.name] = np.sort(rows["channel"].to_numpy(np.int64))
    return chosen


def channel_ablate(
    model: nn.Module,
    loader: Iterable,
    run: Run,
    *,
    interventions: Sequence[str] = ("mean",),
    top: Annotated[int | None, Range(1)] = None,
    by: str = "eta2",
    copies: Annotated[int, Range(1)] = COPIES,
    amp: str | None = None,
    resamples: Annotated[int, Range(1)] = 1000,
    seed: int = 0,
    progress: bool = True,
    total: int | None = None,
) -> pd.DataFrame:
    """The `channel_interventions` table (module docstring) of `model` (the run's, checked against
    it) over `loader`'s (x, y, ...) batches: every channel of every block, or the `top` per block by
    the channels-table column `by`; `copies` channels per pass; `seed` fixes the bootstrap."""
    if not interventions or any(i not in CHANNEL_INTERVENTIONS for i in interventions):
        raise InterventionError(f"channel interventions are some of {', '.join(CHANNEL_INTERVENTIONS)}, "
                                f"not {', '.join(interventions) or 'none'}.")
    device, precision = model_device(model), autocast(model_device(model), amp)
    gates = run_gates(run, model)
    chosen = chosen_channels(run, gates, top, by)
    k = run.meta.stats.config.num_classes
    means = {name: mean.float().to(device) for name, (mean, _) in run_gate_means(run, gates).items()}
    settings = [(g.name, how, part) for g in gates for how in interventions
                for part in np.array_split(chosen[g.name], -(-len(chosen[g.name]) // copies))]
    correct: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    with torch.inference_mode(), tqdm(total=total, unit="img", disable=not progress, file=sys.stderr,
                                      desc="channels") as bar:
        for x, y, *_ in loader:
            check_labels(y, k)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with precision:
                plain = model(x).float()
            if plain.shape[1] != k:
                raise InterventionError(f"the model has {plain.shape[1]} outputs, the run's data {k} classes.")
            rows = [plain.argmax(1) == y]
            for block, how, part in settings:
                m = len(part)
                with precision, ChannelReplacement(model, gates, block, torch.from_numpy(part), how, means[block]):
                    logits = model(x.repeat(m, *[1] * (x.dim() - 1))).float()
                rows.append((logits.argmax(1) == y.repeat(m)).view(m, -1))
            correct.append(torch.cat([rows[0][None], *rows[1:]]).cpu())
            labels.append(y.cpu())
            bar.update(len(y))
    if not correct:
        raise DataError("the data source yielded no samples.")
    return _table(run, settings, torch.cat(correct, 1).numpy(), torch.cat(labels).numpy(), resamples, seed)


def _table(run: Run, settings: list[tuple[str, str, np.ndarray]], correct: np.ndarray, labels: np.ndarray,
           resamples: int, seed: int) -> pd.DataFrame:
    """Rows of `channel_interventions` from per-image correctness [1 + S, N] (row 0 plain; then one
    row per channel of each setting, in order) and the images' labels [N]."""
    names = list(run.meta.stats.class_names)
    keys = [(block, how, int(c)) for block, how, part in settings for c in part]
    frames = []
    for k in np.unique(labels):
        mine = correct[:, labels == k].astype(np.float64)
        diffs = (mine[1:] - mine[0]).T  # [N_k, S]
        low, high = paired_ci(diffs, resamples=resamples, seed=seed)
        frames.append(pd.DataFrame({
            "block": [b for b, _, _ in keys], "channel": [c for _, _, c in keys], "intervention": [h for _, h, _ in keys],
            "class": int(k), "class_name": names[k], "images": mine.shape[1], "acc_base": mine[0].mean(),
            "acc": mine[1:].mean(1), "acc_change": diffs.mean(0), "acc_change_ci_low": low, "acc_change_ci_high": high,
        }))
    table = pd.concat(frames, ignore_index=True).sort_values(["block", "intervention", "channel", "class"],
                                                            kind="stable", ignore_index=True)
    order = {g.name: i for i, g in enumerate(run.meta.stats.gates)}
    table = table.sort_values("block", key=lambda s: s.map(order), kind="stable", ignore_index=True)
    table = table.astype({"channel": "int64", "class": "int64", "images": "int64"})
    return table


def _with_null(name: str, statistic: Any, a: np.ndarray, b: np.ndarray, shuffles: int, seed: int) -> dict[str, float]:
    observed = statistic(a, b)
    null = shuffled_null(statistic, a, b, shuffles=shuffles, seed=seed)
    finite = null[np.isfinite(null)]
    return {name: observed, f"{name}_null": float(finite.mean()) if finite.size else np.nan,
            f"{name}_null_q95": float(np.quantile(finite, 0.95)) if finite.size else np.nan,
            f"{name}_p": null_p(observed, null)}


def channel_agreement(table: pd.DataFrame, run: Run, *, shuffles: Annotated[int, Range(1)] = 999,
                      seed: int = 0) -> pd.DataFrame:
    """Table `channel_agreement`: per block and intervention, whether a channel's class preference
    (its class-mean gates minus their mean over classes, from the run) says which class loses
    (rank correlation across classes, averaged over channels; the share of channels whose preferred
    class loses most) and whether selective channels (Morcos et al.'s index, from the run's channels
    table) hurt one class more; each against `shuffles` shufflings of the channels within the block."""
    selectivity = run.channels.set_index(["block", "channel"])["selectivity"]
    class_means = run.class_means.pivot_table(index=["block", "channel"], columns="class", values="mean",
                                              observed=True)
    rows = []
    for (block, how), group in table.groupby(["block", "intervention"], sort=False):
        loss = -group.pivot(index="channel", columns="class", values="acc_change")  # [M, K'] accuracy lost
        channels = loss.index.to_numpy()
        profile = class_means.loc[block].loc[channels, loss.columns].to_numpy(np.float64)
        preference = profile - profile.mean(1, keepdims=True)
        lost = loss.to_numpy(np.float64)
        rows.append({
            "block": block, "intervention": how, "channels": len(channels),
            "channels_changed": int((np.ptp(lost, axis=1) > 0).sum()),
            **_with_null("preference_rho", preference_agreement, preference, lost, shuffles, seed),
            **_with_null("matched_share", matched_share, preference, lost, shuffles, seed),
            "matched_chance": 1.0 / lost.shape[1],
            **_with_null("selectivity_rho", selectivity_agreement,
                         selectivity.loc[block].loc[channels].to_numpy(np.float64), lost, shuffles, seed),
        })
    agreement = pd.DataFrame(rows).astype({"channels": "int64", "channels_changed": "int64"})
    return agreement
