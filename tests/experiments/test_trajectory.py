"""Training trajectories: planted snapshots whose class-specific block moves give the planted onsets; the command
collects each snapshot of a checkpoint folder once (resumable), refuses what is not its own, and tabulates the runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import collect, save_run
from analysis.cli import main
from analysis.errors import CheckpointError, OptionError, RunFolderError
from analysis.capture.collect import control_config
from analysis.experiments.trajectory import NO_NOTIONS, onset_table, trajectory_runs, trajectory_table
from analysis.jobs import CollectJob, run_trajectory
from analysis.measures.notions import NO_CONTROL
from analysis.models.architectures import build_model
from analysis.models.checkpoint import save_checkpoint, snapshots
from analysis.runs.folder import load_run
from analysis.testing.nets import PlantedBlock, PlantedNet, batches, planted_data
from analysis.testing.runs import cli_error

BLOCKS = ["SE_2_1", "SE_2_2", "SE_2_3", "SE_3_1", "SE_3_2", "SE_3_3"]


def moved(first: int) -> PlantedNet:
    """A planted net whose blocks read the class channels from block `first` (0-based) on, noise before."""
    net = PlantedNet()
    for i in range(6):
        (net.layer1 if i < 3 else net.layer2)[i % 3] = PlantedBlock(16, slice(8, 16) if i >= first else slice(0, 8), 20 + i)
    return net.eval()


def test_planted_snapshots_give_the_planted_onsets(tmp_path):
    x, y = planted_data(600)
    data = batches(x, y, 100)
    control = collect(moved(6), data, 10, progress=False)  # no block reads the classes
    planted = {10: 5, 1: 1, 5: 3}  # epoch: first class-specific block; written out of epoch order
    for epoch, first in planted.items():
        stats = collect(moved(first), data, 10, progress=False)
        stats.controls["untrained"] = {1: control}
        save_run(stats, tmp_path / f"epoch_{epoch:03d}", {"checkpoint": {"epoch": epoch, "test_accuracy": epoch / 100}})
    runs = trajectory_runs(tmp_path)
    table = trajectory_table(runs)
    assert table["epoch"].tolist() == [e for e in sorted(planted) for _ in BLOCKS]
    for run in runs:  # every block row is the snapshot run's own
        rows = table[table.run == run.path.name].drop(columns=[c for c in table if c not in run.blocks])
        pd.testing.assert_frame_equal(rows.reset_index(drop=True), run.blocks)
    head, onsets = table.drop_duplicates("epoch").set_index("epoch"), onset_table(table).set_index("epoch")
    for epoch, first in planted.items():
        assert head.loc[epoch, "onset_shape"] == head.loc[epoch, "onset_detectable"] == BLOCKS[first]
        assert onsets.loc[epoch, "onset_shape"].startswith(f"{BLOCKS[first]} (")  # with its certainty
        assert onsets.loc[epoch, "test_accuracy"] == pytest.approx(epoch / 100)


def test_a_run_of_no_checkpoint_belongs_to_no_trajectory(tmp_path, planted):
    model, x, y = planted
    save_run(collect(model, batches(x[:200], y[:200], 100), 10, progress=False), tmp_path / "epoch_001")
    with pytest.raises(RunFolderError, match="no checkpoint epoch"):
        trajectory_runs(tmp_path)
    with pytest.raises(RunFolderError, match="holds no snapshot run"):
        trajectory_runs(tmp_path / "epoch_001")


@pytest.fixture()
def checkpoint_folder(tmp_path):
    """A checkpoint folder as `train` writes it: epoch_001, epoch_002 and final (epoch 3), other weights each."""
    folder = tmp_path / "ckpt"
    meta = {"arch": "se_resnet20", "arch_args": {"num_classes": 3, "in_channels": 1}, "class_names": ["a", "b", "c"]}
    for epoch, name in [(1, "epoch_001"), (2, "epoch_002"), (3, "final")]:
        torch.manual_seed(epoch)
        save_checkpoint(build_model("se_resnet20", num_classes=3, in_channels=1), folder / name,
                        {**meta, "epoch": epoch, "test_accuracy": epoch / 10})
    return folder


def test_the_command_collects_each_snapshot_once_and_tabulates_them(checkpoint_folder, tmp_path, capsys, monkeypatch):
    out = tmp_path / "traj"
    argv = ["trajectory", str(checkpoint_folder), "--data", "synthetic:classes=3,n=48,size=16,channels=1",
            "--out", str(out), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "trajectory of 3 snapshots" in printed
    assert sorted(p.name for p in out.iterdir()) == ["epoch_001", "epoch_002", "epoch_003", "trajectory.parquet",
                                                     "trajectory.png"]
    table = pd.read_parquet(out / "trajectory.parquet")
    for epoch in (1, 2, 3):
        run = load_run(out / f"epoch_{epoch:03d}")
        assert len(run.controls("untrained")) == 3  # each snapshot with its controls (3 seeds by default)
        assert run.meta.checkpoint.test_accuracy == pytest.approx(epoch / 10)
        rows = table[table.epoch == epoch]
        assert rows["eta2_mean"].tolist() == run.blocks["eta2_mean"].tolist()
        assert set(rows["onset_shape"].fillna("none")) == {run.meta.onset.block or "none"}
    # resumable: nothing collected again with the same settings
    import analysis.jobs as jobs

    monkeypatch.setattr(jobs, "run_collect", lambda job: pytest.fail(f"collected {job.out} again"))
    assert main(argv) == 0
    # other settings: refused without --overwrite, whatever is there is kept
    assert "other settings" in cli_error(capsys, [*argv, "--limit", "30"])
    assert load_run(out / "epoch_001").meta.stats.samples == 48
    (out / "notes.txt").write_text("mine")
    assert "not a trajectory folder" in cli_error(capsys, argv)
    assert (out / "notes.txt").read_text() == "mine"


def test_snapshots_are_read_from_the_checkpoints_own_epochs(checkpoint_folder, tmp_path):
    assert [(e, p.name) for e, p in snapshots(checkpoint_folder)] == [(1, "epoch_001"), (2, "epoch_002"), (3, "final")]
    with pytest.raises(CheckpointError, match="not a checkpoint folder"):
        snapshots(checkpoint_folder / "final.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        snapshots(tmp_path / "empty")
    with pytest.raises(OptionError, match="is a file"):
        run_trajectory(CollectJob(model=str(checkpoint_folder), data="synthetic:classes=3,n=48", out=checkpoint_folder / "final.json"))
    (checkpoint_folder / "epoch_003.json").write_bytes((checkpoint_folder / "final.json").read_bytes())
    (checkpoint_folder / "epoch_003.safetensors").write_bytes((checkpoint_folder / "final.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="both of epoch 3"):
        snapshots(checkpoint_folder)


def test_the_table_carries_each_notion_with_its_certainty_and_undetermined_never_as_a_block(tmp_path):
    x, y = planted_data(600)
    data = batches(x, y, 100)
    with_control = collect(moved(3), data, 10, progress=False)
    for seed in (1, 2):  # untrained controls in which no block reads the classes
        with_control.controls.setdefault("untrained", {})[seed] = collect(
            moved(6), data, 10, config=control_config(with_control.config), progress=False, inputs=False)
    runs = {1: save_run(collect(moved(3), data, 10, progress=False), tmp_path / "epoch_001", {"checkpoint": {"epoch": 1}}),
            2: save_run(with_control, tmp_path / "epoch_002", {"checkpoint": {"epoch": 2}}),
            3: save_run(collect(moved(3), data, 10, progress=False), tmp_path / "epoch_003", {"checkpoint": {"epoch": 3}})}
    meta = json.loads((tmp_path / "epoch_003" / "meta.json").read_text())  # as a run made before the notions
    del meta["onset"]["notions"]
    (tmp_path / "epoch_003" / "meta.json").write_text(json.dumps(meta))
    head = trajectory_table(trajectory_runs(tmp_path)).drop_duplicates("epoch").set_index("epoch")
    for name, record in runs[2].meta.onset.notions.items():  # each notion's cells are the run's own record
        assert head.loc[2, f"onset_{name}_status"] == record.status == "found"
        assert head.loc[2, f"onset_{name}"] == record.block == BLOCKS[3]  # the planted block
        assert head.loc[2, f"onset_{name}_certainty"] == pytest.approx(record.certainty) and 0 < record.certainty <= 1
        assert head.loc[2, f"onset_{name}_rule"] == record.rule and head.loc[2, f"onset_{name}_reason"] is None
    assert head.loc[1, "onset_detectable"] == BLOCKS[3]  # needs no control
    for name in ("magnitude", "shape"):  # without the untrained control: undetermined with its reason, no block
        assert head.loc[1, f"onset_{name}"] is None and head.loc[1, f"onset_{name}_status"] == "undetermined"
        assert head.loc[1, f"onset_{name}_reason"] == runs[1].meta.onset.notions[name].reason == NO_CONTROL
        assert np.isnan(head.loc[1, f"onset_{name}_certainty"])
    for name in ("detectable", "magnitude", "shape"):
        assert head.loc[3, f"onset_{name}"] is None and head.loc[3, f"onset_{name}_reason"] == NO_NOTIONS
    cells = onset_table(trajectory_table(trajectory_runs(tmp_path))).set_index("epoch")
    assert cells.loc[2, "onset_shape"] == f"{BLOCKS[3]} ({runs[2].meta.onset.notions['shape'].certainty:.2f})"
    assert cells.loc[1, "onset_shape"] == "undetermined" and cells.loc[3, "onset_detectable"] == "undetermined"
