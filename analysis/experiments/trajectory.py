"""Training trajectories: the runs of a checkpoint's epoch snapshots, side by side.

    runs = trajectory_runs(Path("runs/traj"))     # the snapshot runs of a trajectory folder, in epoch order
    table = trajectory_table(runs)                # one row per (snapshot, block)
    onsets = onset_table(table)                   # one row per snapshot: its onsets and test accuracy

The SE paper looked at one trained network; its picture (early blocks class-agnostic, late ones
class-specific) may be a product of training. A trajectory folder (`se-analysis trajectory`,
analysis.jobs.run_trajectory) holds one run folder per snapshot of a checkpoint folder, `epoch_NNN/`
(each with its controls), and `trajectory.parquet`, the table below built from them, so the question
"where does gating become class-specific" is asked at every epoch.

Table `trajectory`, one row per (snapshot, block), snapshots in epoch order:

* `epoch`: the snapshot's training epoch (from its checkpoint); `run`: its run folder's name;
  `test_accuracy`: the checkpoint's recorded top-1 accuracy on its test data (NaN if not recorded).
* per notion N of analysis.measures.notions (detectable, magnitude, shape; meta.json "onset.notions"):
  `onset_N`, its onset block, None unless found; `onset_N_status`: found, none (no block holds to
  the end) or undetermined; `onset_N_certainty`: the share of the resampled draws whose own onset is
  that block (NaN where there were no draws); `onset_N_reason`: why it is undetermined (None
  otherwise); `onset_N_rule`: the rule in words. A run that records no notions (made before them)
  has every notion undetermined, with that reason.
* then every column of the snapshot run's blocks table (analysis.measures.schema, "blocks").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import RunFolderError
from analysis.measures.notions import NOTIONS
from analysis.runs.folder import Run, is_run_folder, load_run

TABLE_FILE = "trajectory.parquet"
NOTION_CELLS = ("", "_status", "_certainty", "_reason", "_rule")  # onset_N{cell}: each notion's columns
HEAD = ("epoch", "run", "test_accuracy", *(f"onset_{n.name}{cell}" for n in NOTIONS for cell in NOTION_CELLS))
NO_NOTIONS = "the run records no notions (made before they were); collect it again"


def snapshot_name(epoch: int) -> str:
    """The run folder of a snapshot inside a trajectory folder: `epoch_005`."""
    return f"epoch_{epoch:03d}"


def snapshot_epoch(run: Run) -> int:
    """The training epoch of the checkpoint a run was collected from; RunFolderError without one."""
    checkpoint = run.document.get("checkpoint")
    epoch = checkpoint.get("epoch") if isinstance(checkpoint, dict) else None
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        raise RunFolderError(f"{run.path} is a run of no checkpoint epoch, so it belongs to no trajectory.")
    return epoch


def trajectory_runs(folder: str | Path, verify: bool = False) -> list[Run]:
    """The snapshot runs inside a trajectory folder, in epoch order. Raises RunFolderError when the
    folder holds none, or a run whose checkpoint records no epoch."""
    folder = Path(folder)
    paths = sorted(p for p in folder.iterdir() if p.is_dir() and is_run_folder(p)) if folder.is_dir() else []
    if not paths:
        raise RunFolderError(f"{folder} holds no snapshot run; make one with `se-analysis trajectory`.")
    return sorted((load_run(p, verify=verify) for p in paths), key=snapshot_epoch)


def trajectory_table(runs: Sequence[Run]) -> pd.DataFrame:
    """Table `trajectory` (module docstring) of snapshot runs."""
    frames = []
    for run in runs:
        accuracy = run.meta.checkpoint.test_accuracy if run.meta.checkpoint else None
        head = {"epoch": snapshot_epoch(run), "run": run.path.name,
                "test_accuracy": np.nan if accuracy is None else accuracy, **notion_cells(run)}
        frames.append(run.blocks.assign(**head))
    table = pd.concat(frames, ignore_index=True)
    columns = [*HEAD, *(c for c in table.columns if c not in HEAD)]
    certainty = {f"onset_{n.name}_certainty": "float64" for n in NOTIONS}
    return table[columns].astype({"epoch": "int64", "test_accuracy": "float64", **certainty})


def notion_cells(run: Run) -> dict[str, object]:
    """The head cells of a snapshot run: per notion its block (only where found), status, certainty,
    reason and rule, from meta.json "onset.notions"."""
    recorded = run.meta.onset.notions
    cells: dict[str, object] = {}
    for notion in NOTIONS:
        record = recorded.get(notion.name)
        status = record.status if record else "undetermined"
        certainty = record.certainty if record else None
        values = (record.block if record and status == "found" else None, status,
                  np.nan if certainty is None else certainty, record.reason if record else NO_NOTIONS,
                  record.rule if record else None)
        cells.update({f"onset_{notion.name}{cell}": value for cell, value in zip(NOTION_CELLS, values)})
    return cells


def onset_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per snapshot of a trajectory table: epoch, test accuracy and each notion's onset as a
    cell: its block with its certainty ("SE_3_3 (0.93)"), else its status ("none", "undetermined")."""
    per_epoch = table.drop_duplicates("epoch").reset_index(drop=True)
    cells = {f"onset_{n.name}": [_onset_cell(row, n.name) for _, row in per_epoch.iterrows()] for n in NOTIONS}
    return pd.DataFrame({"epoch": per_epoch["epoch"], "test_accuracy": per_epoch["test_accuracy"], **cells})


def _onset_cell(row: pd.Series, name: str) -> str:
    block, certainty = row[f"onset_{name}"], row[f"onset_{name}_certainty"]
    if block is None or pd.isna(block):
        return str(row[f"onset_{name}_status"])
    return str(block) if pd.isna(certainty) else f"{block} ({certainty:.2f})"
