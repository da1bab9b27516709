"""Per-channel interventions: a planted channel that one class uses costs that class alone; the batched pass
equals a full forward per intervention; the agreement recovers the planted pairing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from analysis import collect, find_gates, save_run
from analysis.errors import InterventionError
from analysis.experiments.channels import channel_ablate, channel_agreement
from analysis.experiments.interventions import run_gate_means
from analysis.models.architectures import SqueezeExcite
from analysis.testing.nets import batches

K = 8  # classes and channels: channel k carries class k's evidence


def planted_se(channels: int, slope: float, centre: float, open_bias: float = 0.0) -> SqueezeExcite:
    """s_c = sigmoid(slope * (z_c - centre)) for z_c >= 0 (or about 1 with a large `open_bias`)."""
    se = SqueezeExcite(channels, reduction=1)
    with torch.no_grad():
        se.fc1.weight.copy_(torch.eye(channels))
        se.fc1.bias.zero_()
        se.fc2.weight.copy_(torch.eye(channels) * slope)
        se.fc2.bias.fill_(-slope * centre + open_bias)
    return se


class ClassChannels(nn.Module):
    """A pass-through block (gates about 1, SE_1), then a block whose gate c opens for class c's images
    alone (SE_2); logit k reads channel k's gated mean, logit 0 gets a head start of 0.8. Replacing
    gate c (c >= 1) by its mean (about 1/K) drops class c's logit from about 2.2 to at most 0.35, below
    0.8: only class c's images change their answer. Gate 0's class keeps its head start: no class loses."""

    def __init__(self) -> None:
        super().__init__()
        self.first = planted_se(K, 0.0, 0.0, open_bias=12.0)
        self.second = planted_se(K, 10.0, 0.5)
        self.head = nn.Linear(K, K)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(K) * 2)
            self.head.bias.copy_(torch.tensor([0.8] + [0.0] * (K - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.second(self.first(x)).mean((2, 3)))


def class_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % K
    x = torch.rand(n, K, 2, 2, generator=g) * 0.2
    x[torch.arange(n), y] += 1.0
    return x, y


def brute_force(model: nn.Module, x: torch.Tensor, block_path: str, channel: int, value: torch.Tensor) -> torch.Tensor:
    """Correctness per image with gate `channel` of the block replaced by `value`, by a plain hook, one full pass."""
    def hook(module, args, out):
        out = out.clone()
        out[:, channel] = value
        return out

    handle = model.get_submodule(block_path).register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model(x).argmax(1)
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def planted_channels(tmp_path_factory):
    model = ClassChannels().eval()
    x, y = class_images(400)
    data = batches(x, y, 60)
    run = save_run(collect(model, data, K, progress=False), tmp_path_factory.mktemp("channels") / "run")
    table = channel_ablate(model, data, run, interventions=("mean", "ones"), copies=3, progress=False, resamples=200)
    return model, x, y, run, table


def test_a_channel_one_class_uses_costs_that_class_alone(planted_channels):
    model, x, y, run, table = planted_channels
    mean = table[(table.block == "SE_2") & (table.intervention == "mean")].set_index(["channel", "class"])
    with torch.no_grad():
        assert (model(x).argmax(1) == y).all()
    for c in range(1, K):
        lost = mean.loc[c, "acc_change"]
        assert lost.loc[c] == pytest.approx(-1.0)  # every image of class c changes its answer
        assert (lost.drop(c) == 0).all()
        assert mean.loc[(c, c), "acc_change_ci_high"] < 0
    assert (mean.loc[0, "acc_change"] == 0).all()
    first = table[table.block == "SE_1"]
    assert (first["acc_change"] == 0).all()  # gates of about 1, replaced by about 1 (mean) or 1 (ones)
    assert (first["acc_change_ci_low"] < 0).all() and (first["acc_change_ci_high"] > 0).all()  # exact zero-change


def test_the_batched_pass_equals_a_full_forward_per_intervention(planted_channels):
    model, x, y, run, table = planted_channels
    gates = find_gates(model)
    means = run_gate_means(run, gates)
    for gate in gates:
        for how in ("mean", "ones"):
            for c in range(K):
                value = means[gate.name][0][c].float() if how == "mean" else torch.tensor(1.0)
                correct = (brute_force(model, x, gate.path, c, value) == y).double().numpy()
                rows = table[(table.block == gate.name) & (table.intervention == how) & (table.channel == c)]
                per_class = [correct[y.numpy() == k].mean() for k in range(K)]
                assert rows.sort_values("class")["acc"].tolist() == pytest.approx(per_class, abs=0)


def test_the_agreement_recovers_the_planted_pairing(planted_channels):
    _, _, _, run, table = planted_channels
    agreement = channel_agreement(table, run, shuffles=99).set_index(["block", "intervention"])
    row = agreement.loc[("SE_2", "mean")]
    assert row["channels"] == K and row["channels_changed"] == K - 1  # channel 0 changes nothing
    assert row["matched_share"] == 1.0 and row["matched_share_p"] < 0.05 and row["matched_share_null_q95"] < 1
    assert row["preference_rho"] > row["preference_rho_null_q95"]
    assert np.isnan(agreement.loc[("SE_1", "mean"), "preference_rho"])  # no channel changed a class: nothing said


def test_top_channels_and_bad_options(planted_channels):
    model, x, y, run, _ = planted_channels
    data = batches(x[:40], y[:40], 40)
    top = channel_ablate(model, data, run, top=2, by="eta2", progress=False, resamples=50)
    channels = run.channels.set_index(["block", "channel"])["eta2"]
    for block, rows in top.groupby("block"):
        chosen = sorted(set(rows["channel"]))
        assert len(chosen) == 2
        assert min(channels.loc[block].loc[chosen]) >= channels.loc[block].drop(chosen).max()
    with pytest.raises(InterventionError, match="ranked by"):
        channel_ablate(model, data, run, top=2, by="nothing", progress=False)
    with pytest.raises(InterventionError, match="some of"):
        channel_ablate(model, data, run, interventions=("shuffle",), progress=False)


def test_the_channels_command_stores_both_tables_in_the_run(tmp_path, capsys):
    from analysis.cli import main
    from analysis.runs.folder import load_run
    from analysis.testing.runs import cli_error

    out = str(tmp_path / "run")
    assert main(["collect", "--model", "se_resnet20", "--random-init", "--data",
                 "synthetic:classes=3,n=48,size=16,channels=1", "--out", out, "--quiet"]) == 0
    assert "ranked by one of" in cli_error(capsys, ["channels", out, "--top", "2", "--by", "nothing"])
    assert not load_run(out).has_table("channel_interventions")  # refused before any pass
    assert main(["channels", out, "--top", "2", "--interventions", "mean,ones", "--resamples", "20",
                 "--shuffles", "9", "--quiet"]) == 0
    assert "tables channel_interventions, channel_agreement written" in capsys.readouterr().out
    run = load_run(out, verify=True)
    table, agreement = run.table("channel_interventions"), run.table("channel_agreement")
    assert len(table) == 9 * 2 * 2 * 3  # blocks x channels x interventions x classes
    assert len(agreement) == 9 * 2 and set(agreement["channels"]) == {2}
