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
* `onset_shape`, `onset_detectable`: the snapshot run's two onsets (meta.json "onset"; schema.ONSETS
  says what each names), None where no block passes; `onset_shape_rule`, `onset_detectable_rule`:
  the rule each was found by (a run without its untrained control says the shape onset was not
  measured).
* then every column of the snapshot run's blocks table (analysis.measures.schema, "blocks").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import RunFolderError
from analysis.runs.folder import Run, is_run_folder, load_run

TABLE_FILE = "trajectory.parquet"
HEAD = ("epoch", "run", "test_accuracy", "onset_shape", "onset_shape_rule", "onset_detectable",
        "onset_detectable_rule")


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
        onset = run.meta.onset
        accuracy = run.meta.checkpoint.test_accuracy if run.meta.checkpoint else None
        head = {"epoch": snapshot_epoch(run), "run": run.path.name,
                "test_accuracy": np.nan if accuracy is None else accuracy,
                "onset_shape": onset.block, "onset_shape_rule": onset.rule,
                "onset_detectable": onset.detectable, "onset_detectable_rule": onset.rule_detectable}
        frames.append(run.blocks.assign(**head))
    table = pd.concat(frames, ignore_index=True)
    columns = [*HEAD, *(c for c in table.columns if c not in HEAD)]
    return table[columns].astype({"epoch": "int64", "test_accuracy": "float64"})


def onset_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per snapshot of a trajectory table: epoch, test accuracy and both onsets ("none"
    where no block passes)."""
    per_epoch = table.drop_duplicates("epoch")[["epoch", "test_accuracy", "onset_shape", "onset_detectable"]]
    return per_epoch.fillna({"onset_shape": "none", "onset_detectable": "none"}).reset_index(drop=True)
