"""The se-analysis command end to end, and its answers to bad input."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import load_run
from analysis.cli import main
from analysis.models.architectures import build_model
from analysis.testing.runs import cli_error

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


def test_random_init_is_drawn_from_the_seed_with_gates_that_vary(tmp_path):
    """timm's own random init zeroes each residual branch's last BatchNorm (every gate a constant,
    eta2 0); --random-init draws the untrained control's weights from --seed instead."""
    tables = {}
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out = tmp_path / name
        assert main(collect_args(out, "--random-init", "--seed", seed, "--image-size", "32",
                                 model="timm:seresnet18", data="synthetic:classes=3,n=24,size=32")) == 0
        run = load_run(out)
        tables[name] = run.blocks
        assert run.meta["random_init"]["seed"] == int(seed) and run.meta["random_init"]["batchnorm"]["samples"] == 24
    pd.testing.assert_frame_equal(tables["a"], tables["b"])
    assert (tables["a"]["eta2_mean"] > 0).all() and (tables["a"]["gate_std"] > 0).all()
    assert not np.allclose(tables["a"]["gate_mean"], tables["c"]["gate_mean"])


def test_bad_input_gives_one_sentence_and_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert "does not exist" in cli_error(capsys, collect_args(out, "--random-init", data="imagefolder:/nonexistent/x"))
    assert "has no SE gate" in cli_error(capsys, collect_args(out, "--random-init", model="torchvision:resnet18", data="synthetic:n=8,size=32"))
    assert "no samples" in cli_error(capsys, collect_args(out, "--random-init", data="synthetic:n=0"))
    # random weights (from --seed 0) whose fc1 outputs leave [0, 1] (some seeds keep them inside)
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


RUN_OPTIONS = ["--model", "se_resnet20", "--random-init", "--data", SYNTH, "--quiet"]
BAD_INPUTS = [  # (arguments with OUT for the output path, what the sentence says)
    (["collect", *RUN_OPTIONS, "--out", "OUT", "--bins", "0"], "--bins must be at least 2, not 0"),
    (["collect", *RUN_OPTIONS, "--out", "OUT", "--bins", "1"], "--bins must be at least 2, not 1"),
    (["collect", *RUN_OPTIONS, "--out", "OUT", "--shards", "0"], "--shards must be at least 1"),
    (["collect", *RUN_OPTIONS, "--out", "OUT", "--topk", "0"], "--topk must be at least 1"),
    (["collect", *RUN_OPTIONS, "--out", "OUT", "--reservoir", "-1"], "--reservoir must be at least 0"),
    (["collect", *RUN_OPTIONS, "--out", "OUT", "--workers", "-1"], "--workers must be at least 0"),
    (["collect", *RUN_OPTIONS, "--out", "OUT", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["collect", *RUN_OPTIONS, "--out", "OUT", "--limit", "0"], "--limit must be at least 1"),
    (["collect", *RUN_OPTIONS, "--out", "OUT", "--image-size", "100000"], "--image-size must be between 8 and 4096"),
    (["collect", *RUN_OPTIONS, "--out", "OUT", "--device", "tpu"], "unknown device 'tpu'"),
    (["collect", "--model", "se_resnet20", "--random-init", "--data", "synthetic:size=100000", "--quiet",
      "--out", "OUT"], "synthetic setting size in 'synthetic:size=100000' must be between 8 and 4096"),
    (["collect", "--model", "se_resnet20", "--random-init", "--data", "synthetic:classes=1,n=8,size=16", "--quiet",
      "--out", "OUT"], "class-specificity needs at least two"),
    (["collect", *RUN_OPTIONS, "--out", "FILE/run"], "cannot be created: "),
    (["collect", "--model", "checkpoints/fmnist_se2O", "--data", SYNTH, "--out", "OUT"], "no checkpoint is there"),
    (["train", "--epochs", "0", "--out", "OUT"], "--epochs must be at least 1, not 0"),
    (["train", "--out", "FILE"], "is a file, not a folder"),
    (["eval", *RUN_OPTIONS[:-1], "--batch-size", "0"], "--batch-size must be at least 1"),
    (["report", "RUN", "--out", "FILE"], "is a file, not a folder"),
    (["ablate", "RUN", "--resamples", "0", "--quiet"], "--resamples must be at least 1, not 0"),
    (["attribute", "RUN", "--steps", "0", "--quiet"], "--steps must be at least 1, not 0"),
    (["dashboard", "--port", "99999", "--runs", "OUT"], "--port must be between 1 and 65535, not 99999"),
]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("small") / "run"
    assert main(["collect", *RUN_OPTIONS, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(("argv", "says"), BAD_INPUTS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_INPUTS])
def test_each_bad_input_is_one_sentence_exit_2_and_creates_nothing(argv, says, small_run, tmp_path, capsys):
    (tmp_path / "FILE").write_text("mine")
    values = {"OUT": str(tmp_path / "out"), "RUN": str(small_run), "FILE": str(tmp_path / "FILE")}
    argv = [values.get(a, a.replace("FILE", values["FILE"])) for a in argv]
    before = sorted(p.name for p in small_run.iterdir())
    assert says in cli_error(capsys, argv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"] and (tmp_path / "FILE").read_text() == "mine"
    assert sorted(p.name for p in small_run.iterdir()) == before


def test_output_piped_into_a_closed_pipe_ends_quietly(small_run):
    # The reader is gone before the command prints (its imports take seconds): as `| head` that stopped.
    show = subprocess.Popen([sys.executable, "-m", "analysis", "show", str(small_run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    show.stdout.close()
    err = show.stderr.read()
    assert show.wait(timeout=120) == 141
    assert err == "", err


def test_random_init_is_seeded_by_seed(tmp_path):
    for name in ("a", "b", "c"):
        seed = "4" if name == "c" else "3"
        assert main(["collect", *RUN_OPTIONS, "--seed", seed, "--out", str(tmp_path / name)]) == 0
    a, b, c = (load_run(tmp_path / name) for name in "abc")
    assert a.meta["state_sha256"] == b.meta["state_sha256"] != c.meta["state_sha256"]
    for table in ("blocks", "channels", "class_means"):
        pd.testing.assert_frame_equal(a.table(table), b.table(table), check_exact=True)
    assert not a.channels["eta2"].equals(c.channels["eta2"])


def test_ablate_run_reads_the_run_and_refuses_other_weights(small_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    assert main(["ablate", str(run), "--groups", "all", "--resamples", "20", "--quiet"]) == 0
    assert load_run(run, verify=True).has_table("interventions")
    other = build_model("se_resnet20", in_channels=1, num_classes=4)
    torch.save(other.state_dict(), tmp_path / "other.pth")
    err = cli_error(capsys, ["ablate", str(run), "--weights", str(tmp_path / "other.pth"), "--groups", "all", "--quiet"])
    assert "was collected with other weights" in err
    err = cli_error(capsys, ["attribute", str(run), "--weights", str(tmp_path / "other.pth"), "--quiet"])
    assert "was collected with other weights" in err


def test_degenerate_classes_are_warned_in_the_run_and_by_show(tmp_path, capsys):
    # 2 samples of 4 classes: two classes without a sample, and every shard but two empty.
    assert main(["collect", *RUN_OPTIONS, "--limit", "2", "--out", str(tmp_path / "r")]) == 0
    warnings = load_run(tmp_path / "r").meta["warnings"]
    assert any("2 of 4 classes have no sample (class_2, class_3)" in w for w in warnings), warnings
    assert any("jackknife shards have no sample" in w for w in warnings), warnings
    capsys.readouterr()
    assert main(["show", str(tmp_path / "r")]) == 0
    assert "warning: 2 of 4 classes have no sample" in capsys.readouterr().out


def test_torchrun_without_distributed_runs_distributed(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "analysis",
               "collect", *RUN_OPTIONS, "--batch-size", "8", "--device", "cpu", "--out", str(tmp_path / "run")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("onset (shape):") == 1  # one writer, not one per process
    run = load_run(tmp_path / "run", verify=True)
    assert run.meta["processes"] == 2 and run.meta["stats"]["samples"] == 96
