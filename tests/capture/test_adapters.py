"""The gate-adapter registry: built once, extended by users in one call, and each adapter's float32
re-run under bf16 against its excitation written out in float64 on the recorded block inputs."""

from __future__ import annotations

import pytest
import torch
from timm.layers.squeeze_excite import SEModule
from torch import nn

from analysis import NoGatesError, collect, find_gates
from analysis.capture import adapters
from analysis.capture.adapters import gate_adapters, register_gate
from analysis.capture.collect import gate_precision
from analysis.testing.brute import brute_moments, stats_moments
from analysis.testing.nets import batches

C, K = 8, 3


class MySE(nn.Module):
    """An SE block of a class nobody knows, its gate in `act` (no `se_gate` declaration)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.act = nn.Linear(C, C), nn.Sigmoid()

    def forward(self, x):
        return x * self.act(self.fc(x.mean((2, 3))))[:, :, None, None]

    def reference(self, x):
        return torch.sigmoid(x.double().mean((2, 3)) @ self.fc.weight.double().T + self.fc.bias.double())


class MaxPooled(SEModule):
    """timm's SEModule with add_maxpool: its squeeze mixes in the channel maxima."""

    def __init__(self) -> None:
        super().__init__(C, rd_channels=4, add_maxpool=True)

    def reference(self, x):
        conv = lambda v, c: v @ c.weight.double().flatten(1).T + c.bias.double()  # noqa: E731
        squeeze = 0.5 * x.double().mean((2, 3)) + 0.5 * x.double().amax((2, 3))
        return torch.sigmoid(conv(torch.relu(conv(squeeze, self.fc1)), self.fc2))


class Net(nn.Module):
    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.stem, self.block = nn.Conv2d(3, C, 3, padding=1), block

    def forward(self, x):
        return self.block(self.stem(x)).mean((2, 3))


@pytest.fixture
def registry(monkeypatch):
    """The registry as built, restored after the test."""
    monkeypatch.setattr(adapters._REGISTRY, "adapters", gate_adapters())


def bf16_gate_equals_its_excitation(model: Net) -> str:
    """Collect under bf16 and compare with block.reference on the bf16 block inputs in float64 (to
    float32 rounding, as in test_stats); returns gate_precision's words."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 3, 5, 5, generator=g), torch.randint(0, K, (96,), generator=g)
    stats = collect(model, batches(x, y, 32), K, amp="bf16", progress=False)
    seen = []
    handle = model.block.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    handle.remove()
    assert seen[0].dtype == torch.bfloat16
    count, mean, var = brute_moments(model.block.reference(seen[0]), y, K)
    n, m, v = stats_moments(stats, stats.gates[0].name)
    assert torch.equal(n, count)
    torch.testing.assert_close(m, mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(v, var, rtol=1e-3, atol=1e-8)
    return gate_precision(model, stats.gates, "bf16")[stats.gates[0].name]


def test_a_registered_class_is_found_and_re_run_from_its_channel_means(registry):
    torch.manual_seed(0)
    model = Net(MySE()).eval()
    with pytest.raises(NoGatesError):
        find_gates(model)
    assert register_gate(MySE, "act", pooled=True) is MySE
    assert [(g.path, g.channels) for g in find_gates(model)] == [("block.act", C)]
    assert str(gate_adapters()[-1]) == f"{__name__}.MySE.act"
    said = bf16_gate_equals_its_excitation(model)
    assert said == "its SE block block re-run in float32 on its input's channel means, pooled in float32, outside bf16 autocast"


def test_an_excitation_that_reads_the_maxima_is_re_run_on_the_whole_input():
    torch.manual_seed(1)
    said = bf16_gate_equals_its_excitation(Net(MaxPooled()).eval())
    assert said == "its SE block block re-run in float32 on the upcast input, outside bf16 autocast"


def test_the_registry_is_built_once_and_a_later_registration_wins(registry):
    first = gate_adapters()
    assert [a is b for a, b in zip(first, gate_adapters())] == [True] * len(first)
    assert any(a.se_class is SEModule for a in first)
    register_gate(SEModule, "fc2")
    assert [a.gate for a in gate_adapters() if a.se_class is SEModule] == ["fc2"]
    assert adapters.adapter_of(MaxPooled()).gate == "fc2"
