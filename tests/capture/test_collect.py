"""The hooked pass: hooks always removed, modes agree, bad input raises a specific error."""

from __future__ import annotations

import pytest
import torch

from analysis import DataError, Gate, GateHooks, GateValueError, LabelError, StatsConfig, collect, find_gates
from analysis.capture.stats import GateStats
from analysis.models.controls import untrained
from analysis.testing.nets import PlantedNet, batches


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


HOOKS_PER_GATE = 2  # on the gate module (its float32 value) and on its SE block (z, the float32 re-run under AMP)
PER_CONTEXT = 1  # on the model: each forward pass starts the count of every module's runs afresh


def class_moments(stats: GateStats, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(count [K], mean [K, C], variance [K, C]) from the shifted moments."""
    count, total, total_sq = (m.sum(0) for m in stats.moments(name))
    n = count[:, None].double()
    return count, stats.shift(name) + total / n, total_sq / n - (total / n) ** 2


def close_stats(a: GateStats, b: GateStats, rtol: float) -> None:
    for gate in a.gates:
        for x, y in zip(class_moments(a, gate.name), class_moments(b, gate.name)):
            torch.testing.assert_close(x, y, rtol=rtol, atol=1e-8)


def test_hooks_are_removed_after_an_exception_inside_the_loop(planted):
    model, x, y = planted
    gates = find_gates(model)
    stats = GateStats(gates, StatsConfig(10))
    assert hook_count(model) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with GateHooks(model, gates, stats):
            assert hook_count(model) == HOOKS_PER_GATE * len(gates) + PER_CONTEXT
            stats.begin_batch(y[:10], torch.arange(10))
            model(x[:10])
            raise RuntimeError("boom")
    assert hook_count(model) == 0


def test_hooks_are_removed_when_the_loader_fails(planted):
    model, x, y = planted

    def failing_loader():
        yield x[:10], y[:10], torch.arange(10)
        raise OSError("disk gone")

    with pytest.raises(OSError):
        collect(model, failing_loader(), 10, progress=False)
    assert hook_count(model) == 0


def test_nested_hooks_remove_only_their_own(planted):
    model, x, y = planted
    gates = find_gates(model)
    outer, inner = GateStats(gates, StatsConfig(10)), GateStats(gates, StatsConfig(10))
    with GateHooks(model, gates, outer):
        with GateHooks(model, gates, inner):
            assert hook_count(model) == 2 * (HOOKS_PER_GATE * len(gates) + PER_CONTEXT)
        assert hook_count(model) == HOOKS_PER_GATE * len(gates) + PER_CONTEXT
    assert hook_count(model) == 0


def test_hooks_do_not_change_the_output(planted):
    model, x, y = planted
    with torch.no_grad():
        plain = model(x[:50])
    gates = find_gates(model)
    stats = GateStats(gates, StatsConfig(10))
    with GateHooks(model, gates, stats), torch.no_grad():
        stats.begin_batch(y[:50], torch.arange(50))
        hooked = model(x[:50])
    assert torch.equal(plain, hooked)


def test_compiled_and_eager_collection_agree(planted):
    model, x, y = planted
    eager = collect(model, batches(x[:400], y[:400], 100), 10, progress=False)
    compiled = collect(PlantedNet().eval(), batches(x[:400], y[:400], 100), 10, compile=True, progress=False)
    close_stats(eager, compiled, rtol=1e-5)
    for gate in eager.gates:
        assert torch.equal(eager.reservoir(gate.name)[2], compiled.reservoir(gate.name)[2])


@pytest.mark.slow
def test_compiled_collection_of_a_model_and_its_untrained_control(planted):
    """`collect --compile --control untrained` compiles two models of one architecture in one process.
    Dynamo does not guard module hooks by default: a graph compiled for a hook-free copy ran the hooked
    one with its hooks skipped (GateValueError: saw 0 of 200 samples). Whatever was compiled before (a
    hook-free copy, the other model with its hooks), each collection equals eager collection."""
    model, x, y = planted
    control = untrained(model, seed=1)
    data = batches(x[:200], y[:200], 100)
    with torch.inference_mode():
        torch.compile(control)(x[:100])  # a hook-free graph of the architecture, compiled first
    results = []
    for m in (model, control, model):
        results.append(collect(m, data, 10, compile=True, progress=False))
        close_stats(collect(m, data, 10, progress=False), results[-1], rtol=1e-5)
    mean = lambda stats: class_moments(stats, "SE_3_1")[1]  # noqa: E731
    assert (mean(results[0]) - mean(results[1])).abs().max() > 0.01  # the two models' gates differ


def test_channels_last_and_eager_agree():
    from analysis.models.architectures import build_model

    torch.manual_seed(0)
    model = build_model("se_resnet20", in_channels=3).eval()
    x, y = torch.randn(64, 3, 16, 16) * 4, torch.randint(0, 3, (64,))
    plain = collect(model, batches(x, y, 32), 3, progress=False)
    cl = collect(model, batches(x, y, 32), 3, channels_last=True, progress=False)
    close_stats(plain, cl, rtol=1e-5)


def test_loader_without_ids_counts_samples(planted):
    model, x, y = planted
    stats = collect(model, [(x[:30], y[:30]), (x[30:50], y[30:50])], 10, progress=False)
    assert stats.samples == 50 and stats.reservoir("SE_2_1")[2].max() < 50


def test_label_out_of_range(planted):
    model, x, y = planted
    bad = y[:20].clone()
    bad[7] = 10
    with pytest.raises(LabelError, match="label 10 is outside the 10 classes"):
        collect(model, [(x[:20], bad)], 10, progress=False)
    assert hook_count(model) == 0


def test_nan_input(planted):
    model, x, y = planted
    xs = x[:20].clone()
    xs[3] = float("nan")
    with pytest.raises(GateValueError, match="NaN"):
        collect(model, [(xs, y[:20])], 10, progress=False)


def test_gates_outside_unit_range():
    model = PlantedNet().eval()
    x = torch.randn(20, 16, 4, 4)
    with pytest.raises(GateValueError, match=r"outside \[0, 1\]"):
        collect(model, [(x, torch.zeros(20, dtype=torch.long))], 10, gate_pattern=r"layer1\.0\.se\.fc1$", progress=False)


def test_empty_data(planted):
    model, _, _ = planted
    with pytest.raises(DataError, match="no samples"):
        collect(model, [], 10, progress=False)


def test_gate_that_never_fires_is_an_error(planted):
    _, x, y = planted
    model = PlantedNet().eval()
    model.unused = torch.nn.Sigmoid()
    gates = find_gates(model) + [Gate("SE_9_9", 7, "unused", 16)]
    with pytest.raises(GateValueError, match="did not run on every forward"):
        collect(model, [(x[:10], y[:10])], 10, gates=gates, progress=False)


def test_inference_mode_outside_is_fine(planted):
    model, x, y = planted
    with torch.inference_mode():
        stats = collect(model, batches(x[:100], y[:100], 50), 10, progress=False)
    assert stats.samples == 100


def test_compiling_the_same_model_twice_feeds_the_new_statistics(planted):
    model, x, y = planted
    first = collect(model, batches(x[:200], y[:200], 100), 10, compile=True, progress=False)
    second = collect(model, batches(x[200:400], y[200:400], 100), 10, compile=True, progress=False)
    eager = collect(model, batches(x[200:400], y[200:400], 100), 10, progress=False)
    assert first.samples == second.samples == 200
    close_stats(eager, second, rtol=1e-5)
