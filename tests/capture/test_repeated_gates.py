"""A gate that runs k times in one forward pass is k gates, one per run (`Gate.firing`), each against
its own excitation written out in float64 on the inputs of that run; never one run overwriting
another. Gates found without seeing the runs are refused with one sentence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analysis import GateHooks, GateStats, GateValueError, StatsConfig, collect, find_gates
from analysis.capture.gates import gate_names
from analysis.capture.names import stage_of
from analysis.experiments.interventions import stages
from analysis.models.architectures import SqueezeExcite
from analysis.testing.brute import brute_moments, stats_moments
from analysis.testing.nets import batches

C, K = 8, 3


def excitation(se: SqueezeExcite, x: torch.Tensor) -> torch.Tensor:
    """The project's SE gate on block inputs x [N, C, H, W], in float64."""
    w1, b1, w2, b2 = (t.double() for t in (se.fc1.weight, se.fc1.bias, se.fc2.weight, se.fc2.bias))
    return torch.sigmoid(torch.relu(x.double().mean((2, 3)) @ w1.T + b1) @ w2.T + b2)


class Twice(nn.Module):
    """One SE module called twice per forward, a convolution between the calls."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.mid, self.se = nn.Conv2d(3, C, 1), nn.Conv2d(C, C, 3, padding=1), SqueezeExcite(C, 2)

    def forward(self, x):
        return self.se(self.mid(self.se(self.stem(x)))).mean((2, 3))


class SharedSigmoid(nn.Module):
    """Two SE blocks holding one nn.Sigmoid instance; the block registered second runs first."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.first, self.second = nn.Conv2d(3, C, 1), SqueezeExcite(C, 2), SqueezeExcite(C, 2)
        self.second.gate = self.first.gate

    def forward(self, x):
        return self.first(self.second(self.stem(x))).mean((2, 3))


class FunctionalBlock(nn.Module):
    """A residual block whose gate is a torch.sigmoid call (found by tracing)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(C, 4), nn.Linear(4, C)

    def forward(self, x):
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x + x * s[:, :, None, None]

    def reference(self, x):
        lin = lambda v, l: v @ l.weight.double().T + l.bias.double()  # noqa: E731
        return torch.sigmoid(lin(torch.relu(lin(x.double().mean((2, 3)), self.fc1)), self.fc2))


class SharedWeights(nn.Module):
    """One block applied twice, at two depths."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.block, self.mid = nn.Conv2d(3, C, 1), FunctionalBlock(), nn.Conv2d(C, C, 3, padding=1)

    def forward(self, x):
        return self.block(self.mid(self.block(self.stem(x)))).mean((2, 3))


class ReusedGate(nn.Module):
    """A module whose one nn.Sigmoid gates two maps (no SE class: named by --gates)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.fc, self.gate = nn.Conv2d(3, C, 1), nn.Linear(C, C), nn.Sigmoid()

    def forward(self, x):
        x = self.stem(x)
        x = x * self.gate(self.fc(x.mean((2, 3))))[:, :, None, None]
        return (x * self.gate(self.fc(x.amax((2, 3))))[:, :, None, None]).mean((2, 3))


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(96, 3, 5, 5, generator=g), torch.randint(0, K, (96,), generator=g)


def inputs_of_each_call(model: nn.Module, module: nn.Module, x: torch.Tensor, amp: bool = False) -> list[torch.Tensor]:
    """Brute force: the input of every call of `module`, in call order, over all of x (batches of 32)."""
    calls: list[list[torch.Tensor]] = []
    handle = module.register_forward_pre_hook(lambda m, a: calls.append(a[0].detach()))
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            for i in range(0, len(x), 32):
                model(x[i:i + 32])
    finally:
        handle.remove()
    per_batch = len(calls) * 32 // len(x)
    return [torch.cat(calls[r::per_batch]) for r in range(per_batch)]


def assert_gates(stats: GateStats, truths: list[torch.Tensor], y: torch.Tensor, atol: float = 1e-7) -> None:
    """Each gate's class counts, means and variances against its float64 truth [N, C]
    (tolerance: float32 rounding, as in test_stats; `atol` 1e-6 for z, whose means are not in [0, 1])."""
    assert len(stats.gates) == len(truths)
    for gate, truth in zip(stats.gates, truths):
        count, mean, var = brute_moments(truth, y, K)
        n, m, v = stats_moments(stats, gate.name)
        assert torch.equal(n, count)
        torch.testing.assert_close(m, mean, rtol=1e-6, atol=atol)
        torch.testing.assert_close(v, var, rtol=1e-3, atol=1e-8)
    other = brute_moments(truths[1], y, K)[1]  # planted negative: the other run's values differ
    assert (stats_moments(stats, stats.gates[0].name)[1] - other).abs().max() > 1e-3


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
def test_an_se_module_called_twice_is_two_gates(amp):
    """Before: one gate SE_1, count 96, the second call's values over the first's. Under bf16 each
    run's block is re-run in float32 on its own input."""
    torch.manual_seed(0)
    model, (x, y) = Twice().eval(), data()
    stats = collect(model, batches(x, y, 32), K, amp="bf16" if amp else None, progress=False)
    assert [(g.name, g.path, g.firing) for g in stats.gates] == [("SE_1.1", "se.gate", 0), ("SE_1.2", "se.gate", 1)]
    first, second = inputs_of_each_call(model, model.se, x, amp)
    assert_gates(stats, [excitation(model.se, first), excitation(model.se, second)], y)
    assert_gates(stats.inputs, [first.double().mean((2, 3)), second.double().mean((2, 3))], y, atol=1e-6)


def test_gates_found_without_an_example_refuse_a_second_run():
    model, (x, y) = Twice().eval(), data()
    gates = find_gates(model)
    assert [g.name for g in gates] == ["SE_1"]
    stats = GateStats(gates, StatsConfig(K))
    with pytest.raises(GateValueError, match=r"^the module se ran 2 times in one forward pass, but its gates \(SE_1\) cover 1 run"):
        with GateHooks(model, gates, stats), torch.no_grad():
            stats.begin_batch(y[:32], torch.arange(32))
            model(x[:32])


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
def test_one_sigmoid_shared_by_two_se_blocks_feeds_each_block_its_own_gate(amp):
    """The shared module runs first for `second` (registered later): each run goes to the block running it."""
    torch.manual_seed(1)
    model, (x, y) = SharedSigmoid().eval(), data(1)
    with pytest.raises(GateValueError, match="first.gate, second.gate are one module shared by several blocks"):
        find_gates(model)
    stats = collect(model, batches(x, y, 32), K, amp="bf16" if amp else None, progress=False)
    assert [(g.path, g.firing) for g in stats.gates] == [("first.gate", 1), ("second.gate", 0)]
    (first,), (second,) = (inputs_of_each_call(model, block, x, amp) for block in (model.first, model.second))
    assert_gates(stats, [excitation(model.first, first), excitation(model.second, second)], y)


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
def test_a_block_with_shared_weights_run_twice_is_two_call_sites(amp):
    """A traced functional gate in a block applied twice: two sites (block, sigmoid:0), runs 0 and 1."""
    torch.manual_seed(2)
    model, (x, y) = SharedWeights().eval(), data(2)
    stats = collect(model, batches(x, y, 32), K, amp="bf16" if amp else None, progress=False)
    assert [(g.name, g.path, g.call, g.firing, g.pooled) for g in stats.gates] == [
        ("SE_1.1", "block", "sigmoid:0", 0, True), ("SE_1.2", "block", "sigmoid:0", 1, True)]
    runs = inputs_of_each_call(model, model.block, x, amp)
    assert_gates(stats, [model.block.reference(run) for run in runs], y)


def test_a_gates_pattern_naming_a_reused_module_is_one_gate_per_run():
    torch.manual_seed(3)
    model, (x, y) = ReusedGate().eval(), data(3)
    assert [g.name for g in find_gates(model, r"^gate$")] == ["SE_1"]  # without an example: one, refused if run twice
    stats = collect(model, batches(x, y, 32), K, gate_pattern=r"^gate$", progress=False)
    assert [(g.name, g.firing, g.channels) for g in stats.gates] == [("SE_1.1", 0, C), ("SE_1.2", 1, C)]
    pre = inputs_of_each_call(model, model.gate, x)
    assert_gates(stats, [torch.sigmoid(run.double()) for run in pre], y)
    with pytest.raises(GateValueError, match="ran 2 times in one forward pass"):
        collect(model, batches(x, y, 32), K, gates=find_gates(model, r"^gate$"), progress=False)


def test_the_runs_of_a_staged_gate_keep_its_stage():
    """`ablate --groups stage` groups SE_{stage}_{block}.k with its stage's other blocks."""
    names = gate_names(["layer1.0.se.gate", "layer1.0.se.gate", "layer1.1.se.gate", "layer2.0.se.gate"])
    assert names == ["SE_2_1.1", "SE_2_1.2", "SE_2_2", "SE_3_1"]
    assert stages(names) == {"SE_2_*": ["SE_2_1.1", "SE_2_1.2", "SE_2_2"], "SE_3_*": ["SE_3_1"]}
    assert stage_of("SE_7.2") is None
