"""Attributions: captum's numbers equal a direct autograd computation; the accumulator streams exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from analysis import Gate, collect, find_gates, load_run, save_run
from analysis.experiments.attributions import AttributionSums, attribute, block_summary, gate_attributions
from analysis.cli import main
from analysis.models.architectures import build_model, se_resnet
from analysis.testing.nets import batches


def tiny(se: str) -> nn.Module:
    torch.manual_seed(0)
    return se_resnet(8, se=se, reduction=2, in_channels=1, num_classes=3, width=4).eval()


def direct_attributions(model: nn.Module, gates: list[Gate], x: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per gate [N, C]: d logit[target] / d s times s, summed over positions, by plain autograd."""
    modules = dict(model.named_modules())
    outputs: dict[str, torch.Tensor] = {}

    def keep(gate: Gate):
        def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            outputs[gate.name] = output

        return hook

    handles = [modules[g.path].register_forward_hook(keep(g)) for g in gates]
    try:
        logits = model(x)
    finally:
        for h in handles:
            h.remove()
    grads = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), [outputs[g.name] for g in gates])
    return {g.name: (grad * outputs[g.name]).flatten(2).sum(2) if grad.dim() > 2 else grad * outputs[g.name]
            for g, grad in zip(gates, grads)}


@pytest.mark.parametrize("se", ["se", "nosqueeze"])
@pytest.mark.parametrize("target", ["pred", "true"])
def test_grad_x_act_equals_autograd_per_class(tmp_path, se, target):
    model = tiny(se)
    gates = find_gates(model)
    x, y = torch.randn(60, 1, 10, 10), torch.arange(60) % 3
    run = save_run(collect(model, batches(x, y, 32), 3, progress=False), tmp_path / "run")
    table, blocks = attribute(model, batches(x, y, 25), run, target=target, progress=False)
    goal = model(x).argmax(1) if target == "pred" else y
    direct = direct_attributions(model, gates, x, goal)
    for g in gates:
        rows = table[table["block"] == g.name]
        for k in range(3):
            cls = rows[rows["class"] == k].sort_values("channel")
            expected = direct[g.name][y == k]
            np.testing.assert_allclose(cls["mean_attr"], expected.mean(0).detach().numpy(), atol=1e-5)
            np.testing.assert_allclose(cls["mean_abs_attr"], expected.abs().mean(0).detach().numpy(), atol=1e-5)
            assert (cls["count"] == 20).all()
    assert blocks["share_abs_attr"].sum() == pytest.approx(1.0)
    assert list(blocks["block"]) == [g.name for g in gates]


def test_integrated_gradients_are_complete_for_one_gate():
    """IG's attributions to a gate sum to the logit change when that gate goes from its value at
    the all-zero baseline image to its value at the image."""
    model = tiny("se")
    gate = model.layer3[0].se.gate
    x, target = torch.randn(4, 1, 10, 10), torch.tensor([0, 1, 2, 0])
    (ig,) = gate_attributions(model, [gate], x, target, method="ig", steps=32)
    seen = []
    handle = gate.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        model(torch.zeros(1, 1, 10, 10))
    handle.remove()
    handle = gate.register_forward_hook(lambda m, i, o: seen[0].expand_as(o))
    with torch.no_grad():
        at_baseline = model(x).gather(1, target[:, None])[:, 0]
    handle.remove()
    with torch.no_grad():
        change = model(x).gather(1, target[:, None])[:, 0] - at_baseline
    assert change.abs().min() > 1e-5  # the gate matters
    torch.testing.assert_close(ig.sum(1).detach(), change, rtol=0.01, atol=1e-7)


def test_the_accumulator_streams_to_the_brute_force_class_means():
    gates = [Gate("A", 1, "a", 3), Gate("B", 2, "b", 2)]
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (50,), generator=g)  # class 3 of 4 never appears
    a = torch.randn(50, 3, generator=g, dtype=torch.float64)
    b = torch.randn(50, 2, 4, 4, generator=g)  # spatial: summed over positions per channel
    sums = AttributionSums(gates, 4)
    for lo, hi in ((0, 7), (7, 30), (30, 50)):
        sums.update(y[lo:hi], [a[lo:hi], b[lo:hi]])
    table = sums.table(["w", "x", "y", "z"])
    assert set(table["class"]) == {0, 1, 2} and set(table["class_name"]) == {"w", "x", "y"}
    for name, values in (("A", a), ("B", b.double().flatten(2).sum(2))):
        for k in range(3):
            rows = table[(table["block"] == name) & (table["class"] == k)].sort_values("channel")
            np.testing.assert_allclose(rows["mean_attr"], values[y == k].mean(0).numpy(), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(rows["mean_abs_attr"], values[y == k].abs().mean(0).numpy(), rtol=1e-12, atol=1e-12)
            assert (rows["count"] == int((y == k).sum())).all()


def test_block_summary_weights_specificity_by_attribution():
    attributions = pd.DataFrame(
        {
            "block": ["A"] * 4 + ["B"] * 2,
            "class": [0, 0, 1, 1, 0, 1],
            "channel": [0, 1, 0, 1, 0, 0],
            "mean_attr": [1.0, 0.0, -1.0, 0.0, 2.0, 2.0],
            "mean_abs_attr": [3.0, 1.0, 3.0, 1.0, 2.0, 2.0],
            "count": [10, 10, 30, 30, 10, 30],
        }
    )
    channels = pd.DataFrame({"block": ["A", "A", "B"], "depth": [1, 1, 2], "channel": [0, 1, 0], "eta2": [0.8, 0.0, 0.5]})
    blocks = block_summary(attributions, channels).set_index("block")
    assert blocks.at["A", "mean_attr"] == pytest.approx((10 * 1 - 30 * 1) / 40)
    assert blocks.at["A", "mean_abs_attr"] == pytest.approx(4.0)
    assert blocks.at["A", "share_abs_attr"] == pytest.approx(4 / 6)
    assert blocks.at["A", "eta2_mean"] == pytest.approx(0.4)
    assert blocks.at["A", "eta2_weighted"] == pytest.approx(0.75 * 0.8)  # used channel is the specific one
    assert blocks.at["A", "attr_eta2_corr"] == pytest.approx(1.0)


def test_cli_attribute_writes_both_tables(tmp_path, capsys):
    weights = tmp_path / "w.pth"
    torch.save(build_model("se_resnet20", in_channels=1, num_classes=3).state_dict(), weights)
    run, data = tmp_path / "run", "synthetic:classes=3,n=30,size=16,channels=1"
    model = ["--model", "se_resnet20", "--weights", str(weights)]
    assert main(["collect", *model, "--data", data, "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["attribute", *model, "--data", data, "--out", str(run), "--batch-size", "16", "--quiet"]) == 0
    assert "share_abs_attr" in capsys.readouterr().out
    loaded = load_run(run)
    assert len(loaded.table("attributions")) == 3 * 3 * (16 + 32 + 64)
    assert list(loaded.table("attribution_blocks")["block"]) == list(loaded.blocks["block"])
    capsys.readouterr()
    assert main(["attribute", *model, "--data", data, "--out", str(tmp_path / "none"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err
