"""The se-analysis command end to end, and its answers to bad input."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
import torch
from conftest import cli_error

from analysis import load_run
from analysis.cli import main
from analysis.models.architectures import build_model

SYNTH = "synthetic:classes=4,n=96,size=16,channels=1"


def collect_args(out, *extra: str, model: str = "se_resnet20", data: str = SYNTH) -> list[str]:
    return ["collect", "--model", model, "--data", data, "--out", str(out), "--batch-size", "32", "--quiet", *extra]


def test_collect_writes_a_run_that_show_prints(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(collect_args(out, "--random-init")) == 0
    run = load_run(out)
    assert run.meta["stats"]["samples"] == 96
    assert run.meta["data"]["num_classes"] == 4
    assert list(run.blocks["block"]) == [f"SE_{s}_{b}" for s in (2, 3, 4) for b in (1, 2, 3)]
    assert len(run.channels) == 3 * (16 + 32 + 64)
    assert len(run.class_means) == 4 * 3 * (16 + 32 + 64)
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "SE_4_3" in printed and "onset (shape):" in printed and "onset (detectable):" in printed and "96 samples" in printed


def test_weights_file_is_used_and_hashed(tmp_path):
    model = build_model("se_resnet20", in_channels=1, num_classes=4)
    weights = tmp_path / "w.pth"
    torch.save(model.state_dict(), weights)
    assert main(collect_args(tmp_path / "run", "--weights", str(weights))) == 0
    meta = load_run(tmp_path / "run").meta
    assert meta["weights"] == str(weights) and len(meta["weights_sha256"]) == 64


def test_timm_model_on_synthetic_images(tmp_path):
    out = tmp_path / "timm"
    data = "synthetic:classes=3,n=12,size=64"
    assert main(collect_args(out, "--random-init", model="timm:seresnet18", data=data)) == 0
    assert list(load_run(out).blocks["block"])[-1] == "SE_5_2"


def test_bad_input_gives_one_sentence_and_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert "does not exist" in cli_error(capsys, collect_args(out, "--random-init", data="imagefolder:/nonexistent/x"))
    assert "has no SE gate" in cli_error(capsys, collect_args(out, "--random-init", model="torchvision:resnet18", data="synthetic:n=8,size=32"))
    assert "no samples" in cli_error(capsys, collect_args(out, "--random-init", data="synthetic:n=0"))
    torch.manual_seed(0)  # random weights whose fc1 outputs leave [0, 1] (some seeds keep them inside)
    assert "outside [0, 1]" in cli_error(capsys, collect_args(out, "--random-init", "--gates", r"layer1\.0\.se\.fc1$"))
    assert "needs weights" in cli_error(capsys, collect_args(out))
    assert "unknown model spec" in cli_error(capsys, collect_args(out, "--random-init", model="nonsense"))
    assert "not a run folder" in cli_error(capsys, ["show", str(tmp_path / "nothing")])
    assert not out.exists()


def test_nan_weights_are_reported(tmp_path, capsys):
    model = build_model("se_resnet20", in_channels=1, num_classes=4)
    state = model.state_dict()
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    assert "NaN" in cli_error(capsys, collect_args(tmp_path / "run", "--weights", str(tmp_path / "nan.pth")))


class Exploit:
    def __reduce__(self):
        return (print, ("code ran",))


def test_weights_that_would_run_code_are_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"x": Exploit()}))
    err = cli_error(capsys, collect_args(tmp_path / "run", "--weights", str(path)))
    assert "not a readable weights file" in err
    assert "code ran" not in capsys.readouterr().out


def test_truncated_and_mismatched_weights(tmp_path, capsys):
    model = build_model("se_resnet20", in_channels=1, num_classes=4)
    torch.save(model.state_dict(), tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    assert "not a readable weights file" in cli_error(capsys, collect_args(tmp_path / "r", "--weights", str(tmp_path / "cut.pth")))
    torch.save(build_model("se_resnet56", in_channels=1, num_classes=4).state_dict(), tmp_path / "other.pth")
    assert "do not fit" in cli_error(capsys, collect_args(tmp_path / "r", "--weights", str(tmp_path / "other.pth")))


def test_existing_run_is_kept_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(collect_args(out, "--random-init", "--seed", "1")) == 0
    before = json.loads((out / "meta.json").read_text())
    assert "already exists" in cli_error(capsys, collect_args(out, "--random-init"))
    assert json.loads((out / "meta.json").read_text()) == before
    assert main(collect_args(out, "--random-init", "--overwrite", "--seed", "2")) == 0
    assert load_run(out).meta["stats"]["config"]["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_interrupted_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    from analysis.measures import tables

    out = tmp_path / "run"
    assert main(collect_args(out, "--random-init")) == 0
    before = (out / "meta.json").read_text()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tables, "class_mean_table", fail)
    assert main(collect_args(out, "--random-init", "--overwrite")) == 130
    assert (out / "meta.json").read_text() == before  # the old run is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary folder left
    assert main(collect_args(tmp_path / "new", "--random-init")) == 130
    assert not (tmp_path / "new").exists()


def test_console_script_exit_code_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", "show", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "not a run folder" in proc.stderr


def test_corrupt_image_in_a_worker_process_is_one_sentence(tmp_path, capsys):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / "imgs" / cls / "ok.jpg")
    (tmp_path / "imgs" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    args = collect_args(tmp_path / "run", "--random-init", "--workers", "1", "--image-size", "32", data=f"imagefolder:{tmp_path / 'imgs'}")
    assert "broken.jpg" in cli_error(capsys, args)
