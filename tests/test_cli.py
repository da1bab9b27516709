"""The se-analysis command end to end, and its answers to bad input."""

from __future__ import annotations

import functools
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import load_run
from analysis.cli import build_parser, main
from analysis.models.architectures import build_model
from analysis.testing.runs import cli_error

SYNTH = "synthetic:classes=4,n=96,size=16,channels=1"


def collect_args(out, *extra: str, model: str = "se_resnet20", data: str = SYNTH) -> list[str]:
    return ["collect", "--model", model, "--data", data, "--out", str(out), "--batch-size", "32", "--quiet", *extra]


def test_collect_writes_a_run_that_show_prints(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(collect_args(out, "--random-init")) == 0
    run = load_run(out)
    assert run.document["stats"]["samples"] == 96
    assert run.document["data"]["num_classes"] == 4
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
    meta = load_run(tmp_path / "run").document
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
        assert run.document["random_init"]["seed"] == int(seed) and run.document["random_init"]["batchnorm"]["samples"] == 24
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
    assert "not a readable weights file: it holds code or objects other than tensors" in err
    assert "weights_only" not in err  # torch's advice to load it anyway would run the code
    assert "code ran" not in capsys.readouterr().out


def test_truncated_and_mismatched_weights(tmp_path, capsys):
    model = build_model("se_resnet20", in_channels=1, num_classes=4)
    torch.save(model.state_dict(), tmp_path / "ok.pth")
    data = (tmp_path / "ok.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    assert "not a readable weights file: it is empty or cut short (an interrupted download?)." in cli_error(
        capsys, collect_args(tmp_path / "r", "--weights", str(tmp_path / "cut.pth")))
    (tmp_path / "empty.safetensors").write_bytes(b"")
    assert "not a readable weights file: it is empty or cut short" in cli_error(
        capsys, collect_args(tmp_path / "r", "--weights", str(tmp_path / "empty.safetensors")))
    torch.save(build_model("se_resnet56", in_channels=1, num_classes=4).state_dict(), tmp_path / "other.pth")
    assert "do not fit" in cli_error(capsys, collect_args(tmp_path / "r", "--weights", str(tmp_path / "other.pth")))


def test_existing_run_is_kept_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(collect_args(out, "--random-init", "--seed", "1")) == 0
    before = json.loads((out / "meta.json").read_text())
    assert "already exists" in cli_error(capsys, collect_args(out, "--random-init"))
    assert json.loads((out / "meta.json").read_text()) == before
    assert main(collect_args(out, "--random-init", "--overwrite", "--seed", "2")) == 0
    assert load_run(out).document["stats"]["config"]["seed"] == 2
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
    (["paper", *RUN_OPTIONS, "--out", "OUT", "--blocks", ""], "--blocks names none; name at least one"),
    (["paper", *RUN_OPTIONS, "--out", "OUT", "--classes", ""], "--classes names none; name at least one"),
    (["collect", *RUN_OPTIONS, "--out", "/proc/x"], "--out /proc/x cannot be created"),
    (["show", "FILE"], "is not a run folder (it is a file)"),
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
    assert a.document["state_sha256"] == b.document["state_sha256"] != c.document["state_sha256"]
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
    warnings = load_run(tmp_path / "r").document["warnings"]
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
    assert run.document["processes"] == 2 and run.document["stats"]["samples"] == 96


def test_thousands_of_unknown_classes_are_cut_to_a_few_and_a_count(tmp_path, capsys):
    classes = ",".join(f"nope{i}" for i in range(5000))
    err = cli_error(capsys, ["collect", *RUN_OPTIONS, "--out", str(tmp_path / "r"), "--classes", classes])
    assert "has no class 'nope0', 'nope1', 'nope2', 'nope3', 'nope4' and 4,995 more;" in err and len(err) < 300


def test_a_list_option_that_is_no_list_says_what_it_wants(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--snapshots", "abc", "--out", str(tmp_path / "ck")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "argument --snapshots: 'abc' is not a comma-separated list of whole numbers" in err
    assert "lambda" not in err and not (tmp_path / "ck").exists()


def test_ablate_seed_help_says_what_it_seeds():
    parser = build_parser()
    ablate = parser._subparsers._group_actions[0].choices["ablate"]
    (seed,) = [a for a in ablate._actions if a.dest == "seed"]
    assert seed.help.startswith("seeds the shuffle intervention and the bootstrap (random-init weights")


def test_a_second_writer_of_the_same_new_out_is_refused_at_once(tmp_path, capsys):
    """A process that holds --out (as a collect does from its start) makes a second collect stop
    before any work; once that process is gone, its claim is taken over."""
    out = tmp_path / "new" / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from analysis.files import claimed\n"
                               f"with claimed({str(out)!r}):\n print('held', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        err = cli_error(capsys, ["collect", *RUN_OPTIONS, "--out", str(out)])
        assert f"--out {out} is being written by another se-analysis (process {holder.pid}); wait for it" in err
        assert sorted(p.name for p in out.parent.iterdir()) == [".run.lock"]
    finally:
        holder.kill()
        holder.wait()
    assert main(["collect", *RUN_OPTIONS, "--out", str(out)]) == 0  # a dead holder's claim is taken over
    assert sorted(p.name for p in out.parent.iterdir()) == ["run"]


def test_paper_with_one_image_per_class_warns_and_estimates_nothing(tmp_path, capsys):
    out = tmp_path / "p"
    capsys.readouterr()
    assert main(["paper", "--model", "se_resnet20", "--random-init", "--data", "synthetic:classes=4,n=16,size=16,channels=1",
                 "--per-class", "1", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Warning from the run: no class has two images (4 classes of one): eta2, its tests and the probe are " \
           "undefined (NaN)" in printed
    assert "Warning from the run: no class has two images" in (out / "paper.html").read_text()
    blocks = load_run(out).blocks
    assert blocks[["eta2_null", "probe_acc", "probe_chance"]].isna().all().all()
    constant = blocks["eta2_mean"] == 0  # a block whose gates do not vary has zero specificity, not NaN
    assert blocks["eta2_mean"].isna().any() and (blocks["eta2_mean"].isna() | constant).all()
    removal = load_run(out).table("interventions")
    if (removal["acc_change"] == 0).all():  # no image changed: the exact interval of 0 changes in 4, not [0, 0]
        assert removal["acc_change_ci_high"].iloc[0] == pytest.approx(1 - 0.025 ** (1 / 4))
    assert "+0.00 to +0.00" not in printed


def test_ablate_refuses_a_stats_file_changed_at_the_same_size(small_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    stats = run / "stats.safetensors"
    data = bytearray(stats.read_bytes())
    data[-1] ^= 0xFF  # one byte of the last tensor changed, the size kept
    stats.write_bytes(bytes(data))
    err = cli_error(capsys, ["ablate", str(run), "--groups", "all", "--quiet"])
    assert err.endswith(f"{stats} is damaged: its sha256 differs from the one meta.json recorded.")


def test_ablate_into_a_run_folder_that_cannot_be_written_stops_before_the_pass(small_run, tmp_path, capsys, monkeypatch):
    """A read-only run folder (simulated: root may write anywhere) is refused before the pass whose table
    would go into it."""
    import analysis.files

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    access = os.access
    monkeypatch.setattr(analysis.files.os, "access", lambda path, mode: access(path, mode) and Path(path) != run)
    import analysis.experiments.interventions as interventions

    @functools.wraps(interventions.ablate)  # its options stay the parser's
    def never(*args, **kwargs):
        pytest.fail("the pass ran")
    monkeypatch.setattr(interventions, "ablate", never)
    err = cli_error(capsys, ["ablate", str(run), "--groups", "all", "--quiet"])
    assert err.endswith(f"the run folder {run} cannot be written: {run} is not writable.")


def test_subcommands_describe_themselves_and_show_their_real_defaults(capsys):
    from analysis.measures.notions import ONSET_MIN_EXCESS

    for command in ("paper", "collect", "ablate", "show"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        usage, description, *_ = capsys.readouterr().out.split("\n\n")
        assert usage.startswith(f"usage: se-analysis {command}") and description[:1].isupper(), command
    with pytest.raises(SystemExit):
        main(["collect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"detectable onset: eta2 above its null by this (default: {ONSET_MIN_EXCESS})" in text
