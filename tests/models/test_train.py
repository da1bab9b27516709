"""A short training run learns, and its checkpoints reload to the same function."""

from __future__ import annotations

import torch

from analysis.models.checkpoint import load_checkpoint
import pytest

from analysis.errors import OptionError
from analysis.models.train import TrainConfig, augment, train


def test_short_training_lowers_the_loss_and_reloads_exactly(tmp_path):
    config = TrainConfig(
        data="synthetic:classes=3,n=384,size=16,channels=1,signal=0.5", epochs=4, batch_size=64,
        lr=0.05, snapshots=(1, 2), width=8,
    )
    result = train(config, tmp_path / "ck", device="cpu", progress=False)
    assert result.losses[-1] < 0.7 * result.losses[0]
    assert result.test_accuracy > 0.6  # 3 classes: chance is 1/3
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == [
        "epoch_001.json", "epoch_001.safetensors", "epoch_002.json", "epoch_002.safetensors",
        "final.json", "final.safetensors",
    ]
    model, meta = load_checkpoint(tmp_path / "ck")
    assert meta["epoch"] == 4 and meta["test_accuracy"] == result.test_accuracy
    assert meta["train_config"]["seed"] == 0 and len(meta["train_losses"]) == 4
    snapshot, snap_meta = load_checkpoint(tmp_path / "ck" / "epoch_001")
    assert snap_meta["epoch"] == 1
    x = torch.randn(8, 1, 16, 16)
    with torch.no_grad():
        assert not torch.equal(model(x), snapshot(x))
    # the same seed trains the same network
    again = train(config, None, device="cpu", progress=False)
    assert again.losses == result.losses


def test_augment_translates_and_flips_within_bounds():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    out = augment(x, pad=0, flip=True, generator=torch.Generator().manual_seed(0))
    for i in range(2):
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(2))
    shifted = augment(x, pad=1, flip=False, generator=torch.Generator().manual_seed(3))
    # every output pixel comes from the replicate-padded input, and the centre moves by at most 1
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    for i in range(2):
        assert any(torch.equal(shifted[i, 0], padded[i, 0, r : r + 4, c : c + 4]) for r in range(3) for c in range(3))


def test_overwrite_replaces_a_checkpoint_whole_and_nothing_else(tmp_path):
    data = "synthetic:classes=2,n=32,size=8,channels=1"
    first = TrainConfig(data=data, epochs=3, batch_size=16, snapshots=(1, 2), width=8)
    train(first, tmp_path / "ck", device="cpu", progress=False)
    with pytest.raises(OptionError, match="already exists"):
        train(first, tmp_path / "ck", device="cpu", progress=False)
    train(TrainConfig(data=data, epochs=1, batch_size=16, width=8), tmp_path / "ck", device="cpu", progress=False,
          overwrite=True)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["final.json", "final.safetensors"]
    (tmp_path / "ck" / "notes.txt").write_text("mine")
    with pytest.raises(OptionError, match="not a checkpoint folder that se-analysis wrote"):
        train(first, tmp_path / "ck", device="cpu", progress=False, overwrite=True)
    assert (tmp_path / "ck" / "notes.txt").read_text() == "mine"
