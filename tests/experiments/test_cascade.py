"""Cascading randomisation against brute force: re-drawn from block b, every gate before b is bit-identical
(plain hooks on the plain and the re-drawn network) and every gate from b on changes; each step of the
table is a plain collection of the re-drawn network; the last step is the untrained control; the flags
follow their rule."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from analysis import collect, save_run
from analysis.capture.collect import control_config
from analysis.cli import main
from analysis.errors import InterventionError
from analysis.experiments.cascade import CASCADE_MEASURES, cascade, cascade_flags, cuts, randomised_paths
from analysis.capture.gates import find_gates
from analysis.measures.tables import block_table
from analysis.models.architectures import build_model
from analysis.models.controls import randomised, untrained
from analysis.presentation.report import CASCADE_HEADING, content
from analysis.runs.folder import load_run
from analysis.testing.nets import batches, record_gates
from analysis.testing.runs import cli_error

SEEDS = 2


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: a second one made these small forwards 5-15 times slower on two loaded cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def resnet():
    """A small SE-ResNet-20 whose weights are none of the controls' (seed 0 of the CPU generator), its data
    (16 x 16 images, 4 classes with a class offset) and its run."""
    torch.manual_seed(0)
    model = build_model("se_resnet20", in_channels=1, num_classes=4).eval()
    y = torch.arange(160) % 4
    x = torch.randn(160, 1, 16, 16) + y[:, None, None, None] * 0.5
    data = batches(x, y, 40)
    return model, x, data


@pytest.fixture(scope="module")
def resnet_cascade(resnet, tmp_path_factory):
    model, _, data = resnet
    run = save_run(collect(model, data, 4, progress=False), tmp_path_factory.mktemp("cascade") / "run")
    return run, cascade(model, data, run, batchnorm_data=data, unit="stage", seeds=SEEDS, progress=False)


def test_cuts_and_paths(planted, resnet):
    model, x, _ = planted
    gates = find_gates(model)
    assert [label for label, _ in cuts(gates, "stage")] == ["SE_3_*", "SE_2_*"]
    assert [label for label, _ in cuts(gates, "block")] == [f"SE_{s}_{b}" for s in (3, 2) for b in (3, 2, 1)]
    paths = randomised_paths(model, gates, x[:2])
    assert paths["SE_2_1"] == ["layer1", "layer2", "fc"]  # the planted net has no stem
    assert paths["SE_2_2"] == ["layer1.1", "layer1.2", "layer2", "fc"]
    assert paths["SE_3_1"] == ["layer2", "fc"]
    net, x, _ = resnet
    paths = randomised_paths(net, find_gates(net), x[:2])
    assert paths["SE_2_1"] == ["stem", "layer1", "layer2", "layer3", "pool", "fc"]
    # the block before's shortcut runs after its gate: it feeds the cut's block, not the gate before
    assert paths["SE_4_1"] == ["layer2.2.shortcut", "layer3", "pool", "fc"]
    with pytest.raises(InterventionError, match="unit"):
        cuts(gates, "layer")


def test_redrawn_from_a_block_every_earlier_gate_is_bit_identical_and_every_later_one_changes(resnet):
    model, x, data = resnet
    gates = find_gates(model)
    names = [g.path for g in gates]
    plain = record_gates(model, names, x)
    paths = randomised_paths(model, gates, x[:2])
    for b, gate in enumerate(gates):
        redrawn = record_gates(randomised(model, paths[gate.name], 7, data), names, x)
        for path in names[:b]:
            assert torch.equal(redrawn[path], plain[path]), (gate.name, path)
        for path in names[b:]:
            assert not torch.isclose(redrawn[path], plain[path]).all(), (gate.name, path)


def test_each_step_is_a_plain_collection_of_the_redrawn_network_and_the_last_is_the_untrained_control(
        resnet, resnet_cascade):
    model, x, data = resnet
    run, table = resnet_cascade
    gates = find_gates(model)
    paths = randomised_paths(model, gates, x[:2])
    config = control_config(run.meta.stats.config)
    measures = ["block", "depth", *CASCADE_MEASURES]

    def plain(net: torch.nn.Module) -> pd.DataFrame:
        return block_table(collect(net, data, 4, config=config, progress=False, inputs=False))[measures]

    assert table.groupby("step", sort=True)["randomised_from"].first().tolist() == ["none", "SE_4_*", "SE_3_*", "SE_2_*"]
    assert sorted(table.loc[table.step > 0, "seed"].unique()) == [1, 2]  # the run's control seeds: --seed + 1 ..
    pd.testing.assert_frame_equal(table[table.step == 0][measures].reset_index(drop=True), plain(model))
    trained = table[table.step == 0].set_index("block")[list(CASCADE_MEASURES)]
    for (step, label, seed), rows in table[table.step > 0].groupby(["step", "randomised_from", "seed"]):
        cut = label.replace("*", "1")
        expected = plain(randomised(model, paths[cut], int(seed), data))
        pd.testing.assert_frame_equal(rows[measures].reset_index(drop=True), expected)
        rows = rows.set_index("block")
        order = [g.name for g in gates]
        before = order[:order.index(cut)]
        assert rows["randomised"].tolist() == [name not in before for name in order]
        pd.testing.assert_frame_equal(rows.loc[before, list(CASCADE_MEASURES)], trained.loc[before])
        assert (rows.loc[~rows["randomised"], "gate_mean"] == trained.loc[before, "gate_mean"]).all()
        assert (rows.loc[rows["randomised"], "gate_mean"] != trained.loc[rows.index[rows["randomised"]], "gate_mean"]).all()
    for seed, rows in table[table.step == table.step.max()].groupby("seed"):
        control = plain(untrained(model, int(seed), data))
        pd.testing.assert_frame_equal(rows[measures].reset_index(drop=True), control)


def test_redrawing_everything_is_the_untrained_control_and_a_part_keeps_the_rest():
    torch.manual_seed(0)
    model = build_model("se_resnet20", in_channels=1, num_classes=4).eval()
    data = [(torch.randn(64, 1, 16, 16), torch.zeros(64, dtype=torch.int64))] * 4
    whole = randomised(model, [name for name, _ in model.named_children()], 5, data)
    control = untrained(model, 5, data)
    for (name, a), (_, b) in zip(whole.state_dict().items(), control.state_dict().items()):
        assert torch.equal(a, b), name
    part = randomised(model, ["layer3", "fc"], 5, data)
    assert torch.equal(part.layer1[0].bn1.running_mean, model.layer1[0].bn1.running_mean)
    assert torch.equal(part.layer3[0].conv1.weight, control.layer3[0].conv1.weight)
    # its BatchNorm statistics are recomputed on what the trained layers before it give it
    assert not torch.equal(part.layer3[0].bn1.running_mean, control.layer3[0].bn1.running_mean)


def test_flags_follow_their_rule():
    rows = []
    for step, seed, values in [(0, -1, (0.5, 0.5)), (1, 1, (0.5, 0.1)), (1, 2, (0.5, 0.3))]:
        for block, value, drawn in zip(["A", "B"], values, [False, bool(step)]):
            rows.append({"step": step, "randomised_from": "B" if step else "none", "seed": seed, "block": block,
                         "depth": 1 + (block == "B"), "randomised": drawn, **{m: value for m in CASCADE_MEASURES}})
    flags = cascade_flags(pd.DataFrame(rows))
    assert set(flags["block"]) == {"B"} and len(flags) == len(CASCADE_MEASURES)  # only the blocks re-drawn
    row = flags.iloc[0]
    assert row["change"] == pytest.approx(-0.3) and row["spread"] == pytest.approx(0.2) and row["status"] == "moved"
    rows = [r | ({m: 0.45 for m in CASCADE_MEASURES} if r["seed"] == 2 and r["block"] == "B" else {}) for r in rows]
    assert set(cascade_flags(pd.DataFrame(rows))["status"]) == {"unmoved"}  # |change| 0.225 <= spread 0.35
    assert set(cascade_flags(pd.DataFrame([r for r in rows if r["seed"] != 2]))["status"]) == {"undetermined"}
    rows[-1]["gate_mean"] = float("nan")
    assert cascade_flags(pd.DataFrame(rows)).set_index("measure").loc["gate_mean", "status"] == "undetermined"


def test_cli_cascade_refuses_bad_options_before_any_pass_and_writes_both_tables(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["collect", "--model", "se_resnet20", "--random-init", "--data",
                 "synthetic:classes=3,n=48,size=16,channels=1", "--control", "none", "--out", out, "--quiet"]) == 0
    assert "seeds" in cli_error(capsys, ["cascade", out, "--seeds", "0"])
    with pytest.raises(SystemExit) as exit:
        main(["cascade", out, "--unit", "layer"])
    assert exit.value.code == 2 and "invalid choice: 'layer'" in capsys.readouterr().err
    assert not load_run(out).has_table("cascade")  # refused before any pass
    assert main(["cascade", out, "--unit", "stage", "--seeds", "2", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "eta2_excess (median over seeds)" in text and "cascade, cascade_flags written" in text
    run = load_run(out, verify=True)
    assert set(run.table("cascade")["randomised_from"]) == {"none", "SE_2_*", "SE_3_*", "SE_4_*"}
    flags = run.table("cascade_flags")
    assert set(flags["block"]) == {g.name for g in run.meta.stats.gates}
    shown = content(run, {}).extra[CASCADE_HEADING].set_index("block")  # the report flags each measure
    for row in flags.itertuples():
        assert shown.loc[row.block, row.measure] == row.status
