"""Cascading randomisation (Adebayo et al. 2018): are the measures about the trained weights?

    table = cascade(model, loader, run, batchnorm_data=source)   # table `cascade`
    flags = cascade_flags(table)                                 # table `cascade_flags`
    flag_matrix(flags)                                           # block x measure: moved / unmoved (the report's)

An explanation that does not change when the weights it explains are randomised is not about the
model. Here the network is re-drawn from the top down, one stage (or block) at a time: step 0 is the
trained network; step i re-draws every weight of the last i stages (or blocks) with the weights the
untrained control of that seed gives them (analysis.models.controls: `randomised`; BatchNorm
statistics of the re-drawn part recomputed on the data as for the control), and keeps the trained
weights and statistics before them. Every step is collected over the same images with the controls'
statistics (`control_config`: moments and class means, no permutation null, no reservoir, so no
probe) and gives the blocks table's measures (CASCADE_MEASURES) per block. Each re-drawn step is drawn
with the run's untrained-control seeds (--seed + 1 .. --seed + seeds), so its last step, everything
re-drawn, is the untrained control of each seed.

Where the cut goes: randomising "from gate g" re-draws every module that first started after the
gate before g gave its output, in one recorded forward pass (analysis.experiments.replay), and for
the first gate every module that ran (the stem too). So the gates before g see exactly the trained
network, bit for bit, whatever is re-drawn after it; g's own block (its convolutions, and the
shortcut of the block before where that runs after its gate) is re-drawn. A module that already ran
before the cut (shared with an earlier part) stays trained, and so do parameters a model holds
outside its submodules.

Table `cascade`, one row per (step, seed, block): `step` (0 trained; i: the last i units re-drawn),
`randomised_from` (the unit re-drawn from: a stage `SE_4_*` or a block; `none` at step 0), `seed`
(the re-drawn part's weight seed; -1 at step 0), `block`, `depth`, `randomised` (the block lies in the
re-drawn part), then the blocks-table columns CASCADE_MEASURES.

Table `cascade_flags`, one row per (block, measure), at the step that first re-draws the block:
`trained` (step 0's value), `randomised_median`, `randomised_low`, `randomised_high` (median, min and
max over the seeds), `change` = median - trained, `spread` = max - min, `seeds`, and `status`:
`moved` where |change| > spread, `unmoved` where |change| <= spread (UNMOVED_RULE: randomising the
weights the measure describes moves it no more than re-drawing them with another seed does, so the
measure does not tell these trained weights from random ones), `undetermined` with fewer than two
seeds or a NaN value. With S seeds a trained value that belongs among the random ones lies outside
their range with chance 2 / (S + 1) (1 in 2 for 3 seeds), and `moved` asks for more than that: a
distance beyond the range larger than the range itself; it is an effect size, not a test.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from typing import Annotated, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from analysis.capture.collect import collect, control_config, model_device
from analysis.capture.gates import Gate, unwrap
from analysis.data import DataSource
from analysis.errors import DataError, InterventionError
from analysis.experiments.interventions import stages
from analysis.experiments.replay import Prefix
from analysis.measures.tables import block_table
from analysis.models.controls import CONTROL_SEEDS, randomised, untrained_seeds
from analysis.options import Range
from analysis.runs.folder import Run
from analysis.runs.matching import run_gates

UNITS = ("stage", "block")
CASCADE_MEASURES = ("eta2_mean", "eta2_excess", "class_mod", "profile_sep", "shape_sep", "selectivity_median",
                    "class_corr_mean", "sat_high", "sat_low", "gate_mean", "gate_std")  # blocks-table columns
TRAINED = "none"  # randomised_from of step 0
UNMOVED_RULE = ("at the step that first re-draws the block, |median over seeds - trained| <= max - min over seeds "
                "(randomising moves the measure no more than re-drawing the weights does)")


def cuts(gates: list[Gate], unit: str) -> list[tuple[str, Gate]]:
    """(label, first gate) of each unit to randomise from, in the order of the cascade: the last
    unit first. Units are stages (`SE_4_*`, needing SE_{stage}_{block} names) or blocks."""
    if unit not in UNITS:
        raise InterventionError(f"the cascade's unit is one of {', '.join(UNITS)}, not {unit!r}.")
    if unit == "block":
        return [(g.name, g) for g in reversed(gates)]
    found = stages([g.name for g in gates])
    if not found or sum(map(len, found.values())) != len(gates):
        raise InterventionError("the model's blocks are not all named SE_{stage}_{block}; use --unit block.")
    by_name = {g.name: g for g in gates}
    return [(label, by_name[blocks[0]]) for label, blocks in reversed(found.items())]


def randomised_paths(model: nn.Module, gates: list[Gate], example: torch.Tensor) -> dict[str, list[str]]:
    """Per gate, the module paths to re-draw when randomising from it (module docstring), from one
    forward pass of `example`."""
    root = unwrap(model)
    prefix = Prefix(root, gates)
    with torch.inference_mode(), prefix.recorded():
        root(example)
    path_of = {id(m): path for path, m in root.named_modules()}
    earlier = [None, *gates[:-1]]
    return {g.name: [path_of[id(m)] for m in prefix.started_after(before.name if before else None)]
            for g, before in zip(gates, earlier)}


def _measures(model: nn.Module, loader: Iterable, run: Run, gates: list[Gate], progress: bool,
              total: int | None, amp: str | None) -> pd.DataFrame:
    """block, depth and CASCADE_MEASURES of `model` over the loader, with the controls' statistics."""
    stats = collect(model, loader, run.meta.stats.config.num_classes, gates=gates,
                    class_names=list(run.meta.stats.class_names), config=control_config(run.meta.stats.config),
                    amp=amp, progress=progress, total=total, inputs=False)
    return block_table(stats)[["block", "depth", *CASCADE_MEASURES]]


def cascade(
    model: nn.Module,
    loader: Iterable,
    run: Run,
    *,
    batchnorm_data: DataSource | Iterable,
    unit: str = "stage",
    seeds: Annotated[int, Range(1)] = CONTROL_SEEDS,
    amp: str | None = None,
    progress: bool = True,
    total: int | None = None,
) -> pd.DataFrame:
    """The `cascade` table (module docstring) of `model` (the run's, checked against it) over
    `loader`'s batches: `unit` stage or block; `seeds` draws per step, the run's control seeds;
    `batchnorm_data` where the re-drawn BatchNorms' statistics are recomputed (the data source, as for
    the untrained control). Raises InterventionError, DataError."""
    if seeds < 1:
        raise InterventionError(f"the cascade needs at least one seed, not {seeds}.")
    gates = run_gates(run, model)
    steps = cuts(gates, unit)
    first = next(iter(loader), None)
    if first is None:
        raise DataError("the data source yielded no samples.")
    device = model_device(model)
    paths = randomised_paths(model, gates, first[0][:2].to(device))
    draws = untrained_seeds(run.meta.job.seed if run.meta.job else run.meta.stats.config.seed, seeds)
    depth = {g.name: i for i, g in enumerate(gates)}
    passes = 1 + len(steps) * len(draws)
    tables = [_measures(model, loader, run, gates, progress, total, amp).assign(
        step=0, randomised_from=TRAINED, seed=-1, randomised=False)]
    for step, (label, cut) in enumerate(steps, start=1):
        for seed in draws:
            if progress:
                print(f"cascade: pass {len(tables) + 1} of {passes}, re-drawn from {label}, seed {seed}", file=sys.stderr)
            net = randomised(unwrap(model), paths[cut.name], seed, batchnorm_data).to(device)
            blocks = _measures(net, loader, run, gates, progress, total, amp)
            tables.append(blocks.assign(step=step, randomised_from=label, seed=seed,
                                        randomised=blocks["block"].map(depth) >= depth[cut.name]))
    table = pd.concat(tables, ignore_index=True)
    columns = ["step", "randomised_from", "seed", "block", "depth", "randomised", *CASCADE_MEASURES]
    return table[columns].astype({"step": "int64", "seed": "int64", "depth": "int64", "randomised": "bool"})


def _first_randomised(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of each block at the step that first re-draws it."""
    drawn = table[table["randomised"]]
    return drawn[drawn["step"] == drawn.groupby("block", sort=False)["step"].transform("min")]


def _status(change: float, spread: float, seeds: int) -> str:
    if seeds < 2 or math.isnan(change) or math.isnan(spread):
        return "undetermined"
    return "unmoved" if abs(change) <= spread else "moved"


def cascade_flags(table: pd.DataFrame) -> pd.DataFrame:
    """Table `cascade_flags` (module docstring): per block and measure, at the step that first
    re-draws the block, whether the measure moved (UNMOVED_RULE)."""
    trained = table[table["step"] == 0].set_index("block")
    rows: list[dict[str, Any]] = []
    for (step, label, block), group in _first_randomised(table).groupby(["step", "randomised_from", "block"],
                                                                        sort=False):
        for measure in CASCADE_MEASURES:
            values = group[measure].to_numpy(np.float64)
            before = float(trained.loc[block, measure])
            median, low, high = float(np.median(values)), float(values.min()), float(values.max())
            change, spread = median - before, high - low
            rows.append({"step": int(step), "randomised_from": label, "block": block, "measure": measure,
                         "trained": before, "randomised_median": median, "randomised_low": low,
                         "randomised_high": high, "change": change, "spread": spread, "seeds": len(values),
                         "status": _status(change, spread, len(values))})
    return pd.DataFrame(rows).astype({"step": "int64", "seeds": "int64"})


def flag_matrix(flags: pd.DataFrame) -> pd.DataFrame:
    """The flags as one row per block (depth order) and one column per measure, each cell its status."""
    matrix = flags.pivot(index="block", columns="measure", values="status")
    return matrix.loc[list(dict.fromkeys(flags["block"]))[::-1], list(CASCADE_MEASURES)].reset_index()


def format_cascade(table: pd.DataFrame, flags: pd.DataFrame, measures: Iterable[str] = ("eta2_excess", "shape_sep")
                   ) -> str:
    """For the terminal: each of `measures` per step (rows, the median over seeds) and block, then
    each block's measures that did not move when it was re-drawn."""
    blocks = list(dict.fromkeys(table["block"]))
    parts = []
    for measure in measures:
        matrix = table.groupby(["step", "randomised_from", "block"], sort=False)[measure].median().unstack("block")
        matrix = matrix[blocks].reset_index("step", drop=True)
        parts.append(f"{measure} (median over seeds), re-drawn from:\n{matrix.to_string(float_format=lambda v: f'{v:.3f}')}")
    for status in ("unmoved", "undetermined"):
        found = flags[flags["status"] == status].groupby("block", sort=False)["measure"].agg(", ".join)
        lines = [f"  {block}: {names}" for block, names in found.items()] or ["  none"]
        parts.append(f"{status} when re-drawn ({UNMOVED_RULE}):" if status == "unmoved" else f"{status}:")
        parts.append("\n".join(lines))
    return "\n".join(parts)
