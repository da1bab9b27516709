"""Checkpoints load without running code, and say clearly what is wrong with a bad file."""

from __future__ import annotations

import json

import pytest
import torch

from analysis import CheckpointError
from analysis.models.checkpoint import load_checkpoint, save_checkpoint
from analysis.models.architectures import build_model

ARGS = {"se": "se", "reduction": 4, "num_classes": 10, "in_channels": 1}


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model("se_resnet20", **ARGS).eval()
    save_checkpoint(model, tmp_path / "ck" / "final", {"arch": "se_resnet20", "arch_args": ARGS, "class_names": list("abcdefghij")})
    return model, tmp_path / "ck"


@pytest.mark.parametrize("name", ["", "final", "final.safetensors", "final.json"])
def test_round_trip_gives_identical_outputs(saved, name):
    model, folder = saved
    loaded, meta = load_checkpoint(folder / name if name else folder)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert meta["class_names"] == list("abcdefghij")


def test_truncated_weights(saved):
    _, folder = saved
    path = folder / "final.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        load_checkpoint(folder)


def test_architecture_mismatch(saved):
    _, folder = saved
    meta = json.loads((folder / "final.json").read_text())
    meta["arch"] = "se_resnet56"
    (folder / "final.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(folder)


def test_missing_half_and_foreign_json(saved):
    _, folder = saved
    (folder / "final.json").write_text('{"arch": "se_resnet20"}')
    with pytest.raises(CheckpointError, match="not an se-analysis checkpoint"):
        load_checkpoint(folder)
    (folder / "final.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(folder)
