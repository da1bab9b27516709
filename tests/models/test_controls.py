"""The untrained-network control: seeded fresh weights, no zero-initialised BatchNorm, BatchNorm
statistics recomputed on the data, several seeds stored inside the run by default (collect and the
Python API), and without them every answer that needs them undetermined."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.data.source import limited_indices

from analysis.capture.collect import collect, control_config
from analysis.capture.stats import StatsConfig
from analysis.cli import main
from analysis.data import make_loader, open_data
from analysis.data.fashion_mnist import FASHION_MNIST_DIR
from analysis.errors import RunFolderError
from analysis.models.checkpoint import load_checkpoint
from analysis.models.controls import BN_BATCH, BN_SAMPLES, recompute_batchnorm, untrained
from analysis.models.spec import build_from_spec
from analysis.runs.folder import load_run

timm = pytest.importorskip("timm")

DATA = "synthetic:classes=4,n=32,size=32"
SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "fmnist_se20"
# A gate that varies by less than this over the images is constant for every purpose here: float32
# rounding of a gate near 0.5 is 6e-8, bf16's step there 0.004; random SE gates vary by ~0.01-0.1.
VARIES = 1e-3


def block_stds(model: torch.nn.Module, source) -> dict[str, float]:
    """Per SE block, the mean over channels of the gate's standard deviation over all images,
    from the raw gate vectors (the reservoir keeps every one of these few images)."""
    stats = collect(model, make_loader(source, 64), source.num_classes, progress=False,
                    config=StatsConfig(source.num_classes, reservoir=len(source.dataset)))
    out = {}
    for gate in stats.gates:
        values, _, _ = stats.reservoir(gate.name)
        assert len(values) == len(source.dataset)
        out[gate.name] = values.double().std(0).mean().item()
    return out


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_timm_untrained_gates_vary_in_every_block_where_plain_random_init_is_constant():
    source = open_data(DATA)
    plain = timm.create_model("seresnet18", pretrained=False).eval()  # zero_init_last: every SE input is 0
    assert max(block_stds(plain, source).values()) == 0.0
    fresh = untrained(plain, seed=3, data=source)
    stds = block_stds(fresh, source)
    assert len(stds) == 8 and all(std > VARIES for std in stds.values()), stds
    assert same_weights(untrained(plain, seed=3, data=source), fresh)
    assert not same_weights(untrained(plain, seed=4, data=source), fresh)
    drawn = build_from_spec("timm:seresnet18", random_init=True, seed=3)[0]  # a spec draws the same weights
    recompute_batchnorm(drawn, source)
    assert same_weights(drawn, fresh)


def test_batchnorm_statistics_are_recomputed_on_the_data_and_the_model_is_left_alone():
    source = open_data("synthetic:classes=4,n=300,size=16,channels=1")
    model, _ = build_from_spec("se_resnet20", random_init=True, in_channels=1, num_classes=4, seed=9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = untrained(model, seed=1, data=source)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not fresh.training and not torch.equal(fresh.stem[0].weight, model.stem[0].weight)
    # Brute force: the first BatchNorm sees the stem convolution's output; momentum=None averages the
    # batch means and the batches' unbiased variances over BN_SAMPLES images (make_loader's stratified limit).
    x = torch.stack([source.dataset[i][0] for i in limited_indices(source.dataset, BN_SAMPLES)])
    with torch.no_grad():
        conv = fresh.stem[0](x).double()
    batches = conv.split(BN_BATCH)
    mean = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    var = torch.stack([b.transpose(0, 1).flatten(1).var(1) for b in batches]).mean(0)
    bn = fresh.stem[1]
    assert bn.num_batches_tracked.item() == BN_SAMPLES // BN_BATCH and bn.momentum == 0.1
    torch.testing.assert_close(bn.running_mean.double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var.double(), var, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="needs dataset-fashion-mnist")
def test_untrained_control_of_the_shipped_se_resnet20():
    trained, _ = load_checkpoint(SHIPPED)
    source = open_data("fashion-mnist:test")
    source = dataclasses.replace(source, dataset=torch.utils.data.Subset(source.dataset, range(128)))
    fresh = untrained(trained, seed=0, data=source)
    shapes = {k: v.shape for k, v in trained.state_dict().items()}
    assert {k: v.shape for k, v in fresh.state_dict().items()} == shapes
    assert not torch.equal(fresh.layer3[2].se.fc2.weight, trained.layer3[2].se.fc2.weight)
    stds = block_stds(fresh, source)
    assert len(stds) == 9 and all(std > VARIES for std in stds.values()), stds


def collect_args(out: Path, *extra: str) -> list[str]:
    return ["collect", "--model", "timm:seresnet18", "--data", DATA, "--out", str(out), "--batch-size", "16",
            "--image-size", "32", "--quiet", *extra]


def test_collect_stores_several_reproducible_untrained_seeds_inside_the_run_by_default(tmp_path):
    weights = tmp_path / "w.pth"  # timm's own init stands in for trained weights: its gates are constant
    torch.save(timm.create_model("seresnet18", pretrained=False).state_dict(), weights)
    runs = {}
    for name, seed in (("s3", "3"), ("s4", "4")):
        assert main(collect_args(tmp_path / name, "--weights", str(weights), "--seed", seed, "--control-seeds", "2")) == 0
        runs[name] = load_run(tmp_path / name)
    run, controls = runs["s3"], runs["s3"].controls()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s3", "s4", "w.pth"]  # no temporary folder left
    assert run.document["controls"] == {"untrained": {"seeds": [4, 5], "folders": ["untrained/seed_4", "untrained/seed_5"],
                                                      "samples": [32]}}
    assert run.meta.controls["untrained"].seeds == (4, 5)
    assert [c.path for c in controls] == [tmp_path / "s3" / "untrained" / "seed_4", tmp_path / "s3" / "untrained" / "seed_5"]
    assert [c.document["control"]["seed"] for c in controls] == [4, 5]
    assert controls[0].document["control"]["batchnorm"]["samples"] == 32
    assert controls[0].meta.weights_sha256 is None and run.meta.weights_sha256
    assert list(controls[0].blocks["block"]) == list(run.blocks["block"])
    assert (run.blocks["eta2_mean"] == 0).all() and (controls[0].blocks["eta2_mean"] > 0).all()
    # the band columns are the smallest and largest over the seeds' own tables
    both = [c.blocks.set_index("block")["eta2_mean"] for c in controls]
    blocks = run.blocks.set_index("block")
    assert (blocks["eta2_untrained"] == np.maximum(*both)).all() and (blocks["eta2_untrained_low"] == np.minimum(*both)).all()
    # Each control's statistics are those of the untrained network of its seed collected directly with the
    # control passes' settings (reproducible: the run with --seed 4 holds seed 5 too), and seeds differ.
    source = open_data(DATA)
    direct = collect(untrained(timm.create_model("seresnet18"), 5, source), make_loader(source, 16), 4,
                     progress=False, config=control_config(StatsConfig(4, seed=3)), inputs=False)
    same = {k: torch.equal(v, direct.state_dict()[k]) for k, v in controls[1].stats.state_dict().items()}
    assert all(same.values()), [k for k, v in same.items() if not v]
    first = controls[0].stats.gates[0].name
    assert not torch.equal(controls[0].stats.moments(first)[1], controls[1].stats.moments(first)[1])
    assert torch.equal(controls[1].stats.moments(first)[1], runs["s4"].controls()[0].stats.moments(first)[1])


def test_collect_control_none_leaves_every_answer_that_needs_it_undetermined(tmp_path, capsys):
    capsys.readouterr()
    assert main(collect_args(tmp_path / "r", "--random-init", "--control", "none")) == 0
    printed = capsys.readouterr().out
    run = load_run(tmp_path / "r")
    assert run.controls() == [] and run.meta.controls == {} and not (tmp_path / "r" / "untrained").exists()
    for name in ("magnitude", "shape"):
        assert run.meta.onset.notions[name].status == "undetermined"
        assert f"onset ({name}): undetermined (no untrained control)" in printed
    assert run.meta.onset.block is None and "onset (detectable): " in printed
    with pytest.raises(RunFolderError, match="not a control"):
        run.controls("shuffled")
    with pytest.raises(SystemExit):
        main(collect_args(tmp_path / "x", "--control", "shuffled"))
    assert "invalid choice: 'shuffled'" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_random_init_run_is_compared_with_other_untrained_seeds(tmp_path):
    """--random-init draws the model from --seed; its controls are seeds --seed+1.. (never itself)."""
    assert main(collect_args(tmp_path / "r", "--random-init", "--seed", "2", "--control-seeds", "1")) == 0
    run = load_run(tmp_path / "r")
    assert run.document["random_init"]["seed"] == 2 and run.meta.controls["untrained"].seeds == (3,)
    assert run.controls()[0].meta.state_sha256 != run.meta.state_sha256


def test_the_python_api_collects_controls_of_any_model_and_save_run_writes_them(tmp_path):
    """analysis.collect(model, loader, K, control="untrained", control_seeds=2) on a timm model in a
    plain list of batches; an iterator cannot be read twice and is refused before any pass."""
    import analysis

    source = open_data(DATA)
    batches = list(make_loader(source, 16))
    model = untrained(timm.create_model("seresnet18"), 0, source)  # stands in for a trained model
    stats = analysis.collect(model, batches, 4, control="untrained", control_seeds=2, progress=False)
    assert sorted(stats.controls["untrained"]) == [1, 2]
    run = analysis.save_run(stats, tmp_path / "api", meta={"model": "seresnet18"})
    assert [c.document["control"] for c in run.controls()] == [{"kind": "untrained", "seed": 1},
                                                                {"kind": "untrained", "seed": 2}]
    assert run.meta.onset.notions["shape"].control_seeds == (1, 2)
    assert run.meta.onset.notions["shape"].status in ("found", "none")
    with pytest.raises(analysis.DataError, match="read again"):
        analysis.collect(model, iter(batches), 4, control="untrained", progress=False)
