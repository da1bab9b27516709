"""Interventions: each replacement equals its direct computation; intervals behave; bad runs are refused."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from analysis import GateHooks, GateStats, StatsConfig, collect, find_gates, load_run, save_run
from analysis.cli import main
from analysis.errors import InterventionError
from analysis.experiments.interventions import (
    GateReplacement,
    Intervention,
    ablate,
    block_groups,
    bootstrap_ci,
    derangement,
    predicted_removable,
    run_gate_means,
)
from analysis.models.architectures import build_model, se_resnet
from analysis.testing.nets import PlantedNet, batches, planted_data, record_gates
from analysis.testing.runs import cli_error


def random_bn_statistics(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics, so that eval-mode batch norm does something."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


@pytest.mark.parametrize("se", ["se", "nosqueeze"])
def test_ones_on_every_block_is_the_model_without_se(se):
    torch.manual_seed(0)
    model = random_bn_statistics(build_model("se_resnet20", se=se, in_channels=1, num_classes=4))
    twin = build_model("se_resnet20", se="none", in_channels=1, num_classes=4).eval()
    state = model.state_dict()
    kept = {k: v for k, v in state.items() if ".se." not in k}
    assert len(kept) < len(state)
    twin.load_state_dict(kept, strict=True)  # the twin needs every other key, and only those
    gates = find_gates(model)
    x = torch.randn(6, 1, 16, 16)
    with torch.no_grad():
        with GateReplacement(model, gates, {}, Intervention(frozenset(g.name for g in gates), "ones")):
            replaced = model(x)
        plain = model(x)
        assert torch.equal(replaced, twin(x))  # x * 1 is exact
    assert not torch.allclose(plain, replaced)


def test_shuffle_of_identical_images_changes_nothing_and_takes_another_image():
    model = random_bn_statistics(se_resnet(20, in_channels=1, num_classes=4))
    gates = find_gates(model)
    same, different = torch.randn(1, 1, 16, 16).expand(8, -1, -1, -1), torch.randn(8, 1, 16, 16)
    perm = derangement(8, torch.Generator().manual_seed(3))
    with torch.no_grad():
        plain = [model(same), model(different)]
        with GateReplacement(model, gates, {}, Intervention(frozenset(g.name for g in gates), "shuffle"), order=perm):
            torch.testing.assert_close(model(same), plain[0], rtol=0, atol=1e-6)
            assert not torch.allclose(model(different), plain[1])
    assert sorted(perm.tolist()) == list(range(8)) and (perm != torch.arange(8)).all()
    with pytest.raises(InterventionError, match="order"):
        GateReplacement(model, gates, {}, Intervention(frozenset({gates[0].name}), "shuffle"))


class Fixed(nn.Module):
    """A gate that outputs given vectors [N or 1, C] at every position."""

    def __init__(self, values: torch.Tensor) -> None:
        super().__init__()
        self.values = values

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.values.view(*self.values.shape, *[1] * (z.dim() - 2)).expand_as(z)


@pytest.mark.parametrize("se", ["se", "nosqueeze"])
def test_mean_and_class_mean_equal_feeding_the_run_means_directly(tmp_path, se):
    torch.manual_seed(0)
    model = random_bn_statistics(se_resnet(8, se=se, reduction=2, in_channels=1, num_classes=3, width=8))
    gates = find_gates(model)
    x, y = torch.randn(90, 1, 10, 10), torch.arange(90) % 3
    run = save_run(collect(model, batches(x, y, 32), 3, progress=False), tmp_path / "run")
    means = run_gate_means(run, gates)
    brute = record_gates(model, [g.path for g in gates], x)
    for g in gates:
        torch.testing.assert_close(means[g.name][0], brute[g.path].mean(0), rtol=0, atol=1e-6)
        torch.testing.assert_close(means[g.name][1][1], brute[g.path][y == 1].mean(0), rtol=0, atol=1e-6)
    target = gates[1]  # SE_3_1
    block = model.layer2[0].se
    xb, yb = x[:12], y[:12]
    for how, values in (("mean", means[target.name][0][None]), ("class-mean", means[target.name][1][yb])):
        direct = copy.deepcopy(model)
        direct.layer2[0].se.gate = Fixed(values.float())
        with torch.no_grad(), GateReplacement(model, gates, means, Intervention(frozenset({target.name}), how), labels=yb):
            torch.testing.assert_close(model(xb), direct(xb), rtol=0, atol=1e-6)
    assert isinstance(block.gate, nn.Sigmoid)


class GatedPlanted(PlantedNet):
    """PlantedNet whose SE blocks rescale the features, read by a nearest-class-mean head, so the
    class signal of the later gates reaches the logits."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for block in [*self.layer1, *self.layer2]:
            x = block.se(x)
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def test_class_mean_never_loses_to_mean_where_the_class_signal_is_in_the_gates(tmp_path):
    torch.manual_seed(0)
    model = GatedPlanted().eval()
    x, y = planted_data(1200)
    with torch.no_grad():
        f = model.features(x)
        centres = torch.stack([f[y == k].mean(0) for k in range(10)])
        model.fc.weight.copy_(centres)
        model.fc.bias.copy_(-0.5 * (centres * centres).sum(1))
    run = save_run(collect(model, batches(x, y, 200), 10, progress=False), tmp_path / "planted")
    xt, yt = planted_data(600, seed=5)
    table = ablate(model, batches(xt, yt, 200), run, interventions=["mean", "class-mean"], resamples=50, progress=False)
    acc = table.pivot(index="group", columns="intervention", values="acc")
    # Class-agnostic gates: class means differ from the mean by sampling noise only (a few images).
    assert (acc["class-mean"] >= acc["mean"] - 0.01).all()
    for group in ("SE_3_*", "all"):  # the class-specific stage: the oracle helps clearly
        assert acc.at[group, "class-mean"] > acc.at[group, "mean"] + 0.02
    predicted = table.drop_duplicates("group").set_index("group")["predicted_removable"]
    assert predicted["SE_2_*"] and not predicted["SE_3_*"] and not predicted["all"]


def test_bootstrap_interval_contains_the_estimate_and_shrinks_as_one_over_root_n():
    rng = np.random.default_rng(0)
    widths = []
    for n in (400, 1600):
        d = rng.integers(0, 2, (n, 1)).astype(float)  # std 0.5
        low, high = bootstrap_ci(d, resamples=1000, seed=1)
        assert low[0] < d.mean() < high[0]
        widths.append(high[0] - low[0])
        assert widths[-1] == pytest.approx(2 * 1.96 * 0.5 / np.sqrt(n), rel=0.15)
    assert widths[1] == pytest.approx(widths[0] / 2, rel=0.2)
    low, high = bootstrap_ci(np.full((50, 2), 0.25), resamples=100)
    np.testing.assert_allclose([low, high], 0.25)


def test_groups_and_the_removability_rule():
    gates = find_gates(se_resnet(20))
    groups = block_groups(gates, "block,stage,all,SE_4_2+SE_4_3")
    assert [g[0] for g in groups][-6:] == ["SE_4_3", "SE_2_*", "SE_3_*", "SE_4_*", "all", "SE_4_2+SE_4_3"]
    assert groups[-1] == ("SE_4_2+SE_4_3", "set", ["SE_4_2", "SE_4_3"])
    assert block_groups(gates, "SE_3_*") == [("SE_3_*", "stage", ["SE_3_1", "SE_3_2", "SE_3_3"])]
    for bad in ("stages", "SE_9_1", "SE_5_*", ""):
        with pytest.raises(InterventionError):
            block_groups(gates, bad)
    blocks = pd.DataFrame({"block": ["a", "b", "c"], "sat_high": [0.6, 0.0, 0.0], "eta2_excess": [0.5, 0.05, 0.5]})
    assert predicted_removable(blocks, 0.1).tolist() == [True, True, False]


SYNTH = "synthetic:classes=3,n=48,size=16,channels=1"


def test_cli_ablate_writes_its_table_and_refuses_runs_of_other_models(tmp_path, capsys):
    weights = tmp_path / "w.pth"
    torch.save(build_model("se_resnet20", in_channels=1, num_classes=3).state_dict(), weights)
    run = tmp_path / "run"
    model = ["--model", "se_resnet20", "--weights", str(weights)]
    assert main(["collect", *model, "--data", SYNTH, "--out", str(run), "--quiet"]) == 0

    def ablate_args(*model: str, out=run, data: str = SYNTH, groups: str = "stage,all") -> list[str]:
        return ["ablate", *model, "--data", data, "--out", str(out), "--groups", groups, "--resamples", "50", "--quiet"]

    capsys.readouterr()
    assert main(ablate_args(*model)) == 0
    printed = capsys.readouterr().out
    assert "SE_4_*" in printed and "class-mean" in printed and "plain model: top-1" in printed
    table = load_run(run).table("interventions")
    assert len(table) == 4 * 4 and (table["samples"] == 48).all()

    assert "does not exist" in cli_error(capsys, ablate_args(*model, out=tmp_path / "none"))
    assert "run of another model" in cli_error(capsys, ablate_args("--model", "se_resnet32", "--random-init"))
    random_run = tmp_path / "random"
    assert main(["collect", "--model", "se_resnet20", "--random-init", "--data", SYNTH, "--out", str(random_run), "--quiet"]) == 0
    four_classes = "synthetic:classes=4,n=8,size=16,channels=1"
    assert "other" in cli_error(  # other classes: a head of other shape, so other weights too
        capsys, ablate_args("--model", "se_resnet20", "--random-init", out=random_run, data=four_classes)
    )
    torch.save(build_model("se_resnet20", in_channels=1, num_classes=3).state_dict(), tmp_path / "w2.pth")
    assert "weights" in cli_error(capsys, ablate_args("--model", "se_resnet20", "--weights", str(tmp_path / "w2.pth")))
    assert "neither block" in cli_error(capsys, ablate_args(*model, groups="SE_9_9"))


def test_replacement_hooks_are_removed_after_an_exception_and_nest_with_collection_hooks(planted):
    model, x, y = planted
    gates = find_gates(model)
    count = lambda: sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())  # noqa: E731
    stats = GateStats(gates, StatsConfig(10))
    with pytest.raises(RuntimeError, match="boom"):
        with GateHooks(model, gates, stats), GateReplacement(model, gates, {}, Intervention(
                frozenset(g.name for g in gates), "ones")):
            # collection: gate and block pre-hooks; replacement: one hook; each context: one on the model (its runs)
            assert count() == 3 * len(gates) + 2
            stats.begin_batch(y[:10], torch.arange(10))
            with torch.no_grad():
                model(x[:10])
            stats.end_batch()
            raise RuntimeError("boom")
    assert count() == 0
    stats.finish()
    # registered first, the collection hooks saw the real gates, not the replacement's ones
    assert not torch.equal(stats.top(gates[0].name)[0][:, 0], torch.ones(gates[0].channels))


def brute_outcomes(model, gates, means, x, y, settings, generator):
    """(correct [1 + S, N], loss [1 + S, N]) of the plain model and of each setting, each by a full
    forward pass with its gates replaced: what ablate computed before it replayed the prefix."""
    order = derangement(len(y), generator)
    logits = [model(x)]
    for setting in settings:
        with GateReplacement(model, gates, means, setting, labels=y, order=order):
            logits.append(model(x))
    return (torch.stack([out.argmax(1) == y for out in logits]),
            torch.stack([torch.nn.functional.cross_entropy(out, y, reduction="none") for out in logits]))


def test_ablate_equals_a_full_forward_pass_per_intervention(tmp_path):
    """Every group kind and intervention of the default run, on a 9-block SE-ResNet: ablate (the
    prefix before each setting's first changed gate replayed) gives the accuracy and loss of one full
    forward pass per setting; tolerance 1e-6 (the same operations on the same values)."""
    torch.manual_seed(0)
    model = random_bn_statistics(se_resnet(20, in_channels=1, num_classes=3))
    gates = find_gates(model)
    x, y = torch.randn(60, 1, 16, 16), torch.arange(60) % 3
    run = save_run(collect(model, batches(x, y, 30), 3, progress=False), tmp_path / "run")
    table = ablate(model, batches(x, y, 30), run, resamples=20, seed=4, progress=False)
    groups = block_groups(gates)
    settings = [Intervention(frozenset(b), how) for _, _, b in groups for how in ("ones", "mean", "class-mean", "shuffle")]
    means = run_gate_means(run, gates)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        outcomes = [brute_outcomes(model, gates, means, xb, yb, settings, generator) for xb, yb, _ in batches(x, y, 30)]
    correct, loss = (torch.cat(part, 1).double() for part in zip(*outcomes))
    assert len(table) == len(settings) == 52
    np.testing.assert_allclose(table["acc"], correct[1:].mean(1), atol=1e-12)
    np.testing.assert_allclose(table["loss"], loss[1:].mean(1), rtol=1e-6)
    np.testing.assert_allclose(table["loss_base"], loss[0].mean(), rtol=1e-6)
    assert table["loss"].nunique() > 40  # the settings differ from each other
