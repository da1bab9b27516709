"""SE gates however they are written: traced discovery (capture.tracing) against hand-written
blocks, each with its gate written out by hand in float64 (`reference`), as brute force."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import CecaModule, EcaModule
from timm.layers.activations import Swish
from timm.layers.cbam import CbamModule, SpatialAttn
from torch import nn

from analysis import GateStats, NoGatesError, collect, find_gates
from analysis.capture.collect import gate_precision
from analysis.capture.hooks import ForwardHooks
from analysis.errors import GateValueError, OptionError
from analysis.models.architectures import build_model
from analysis.testing.brute import brute_moments, stats_moments
from analysis.testing.nets import batches

C = 8


def lin(v: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """A Linear or 1x1 Conv2d layer on v [N, C_in], in float64."""
    bias = 0 if layer.bias is None else layer.bias.double()
    return v @ layer.weight.double().flatten(1).T + bias


def mlp(v: torch.Tensor, first: nn.Module, second: nn.Module) -> torch.Tensor:
    return lin(torch.relu(lin(v, first)), second)


class SequentialSE(nn.Module):
    """(a) nn.Sequential(pool, conv, relu, conv, sigmoid), multiplied in the parent's forward."""

    def __init__(self) -> None:
        super().__init__()
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(C, 4, 1), nn.ReLU(), nn.Conv2d(4, C, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.se(x)

    def reference(self, x):
        return torch.sigmoid(mlp(x.mean((2, 3)), self.se[1], self.se[3]))


class FcSigmoid(nn.Module):
    """(b) torch.sigmoid on fc outputs [N, C], then .view(N, C, 1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(C, 4), nn.Linear(4, C)

    def forward(self, x):
        n, c = x.shape[:2]
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3)))))).view(n, c, 1, 1)

    def reference(self, x):
        return torch.sigmoid(mlp(x.mean((2, 3)), self.fc1, self.fc2))


class HardModule(nn.Module):
    """(c) nn.Hardsigmoid as the gate module."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.gate = nn.Linear(C, C), nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.fc(x.mean((2, 3))))[:, :, None, None]

    def reference(self, x):
        return F.hardsigmoid(lin(x.mean((2, 3)), self.fc))


class HardFunction(HardModule):
    """(c) F.hardsigmoid called in forward."""

    def forward(self, x):
        return x * F.hardsigmoid(self.fc(x.mean((2, 3))))[:, :, None, None]


class Eca(nn.Module):
    """(d) ECA by hand: mean -> [N, 1, C] -> Conv1d -> Tensor.sigmoid -> [N, C, 1, 1] -> expand_as."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv(x.mean((2, 3)).view(x.shape[0], 1, -1)).sigmoid().view(x.shape[0], -1, 1, 1)
        return x * y.expand_as(x)

    def reference(self, x):
        return torch.sigmoid(F.conv1d(x.mean((2, 3))[:, None], self.conv.weight.double(), padding=1))[:, 0]


class TimmEca(EcaModule):
    def reference(self, x):
        return torch.sigmoid(F.conv1d(x.mean((2, 3))[:, None], self.conv.weight.double(), padding=self.conv.padding))[:, 0]


class TimmCeca(CecaModule):
    def reference(self, x):
        padded = F.pad(x.mean((2, 3))[:, None], (self.padding, self.padding), mode="circular")
        return torch.sigmoid(F.conv1d(padded, self.conv.weight.double()))[:, 0]


class Cbam(nn.Module):
    """(e) CBAM: channel attention (avg and max descriptors, shared MLP, summed, sigmoid), then the
    spatial attention map [N, 1, H, W], the module's second sigmoid call, which is no channel gate."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(C, 4, 1), nn.Conv2d(4, C, 1)
        self.spatial = nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x):
        def shared(v):
            return self.fc2(F.relu(self.fc1(v)))

        x = x * torch.sigmoid(shared(F.adaptive_avg_pool2d(x, 1)) + shared(F.adaptive_max_pool2d(x, 1)))
        return x * torch.sigmoid(self.spatial(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))

    def reference(self, x):
        return torch.sigmoid(mlp(x.mean((2, 3)), self.fc1, self.fc2) + mlp(x.amax((2, 3)), self.fc1, self.fc2))


class TimmCbam(CbamModule):
    def reference(self, x):
        a = self.channel
        return torch.sigmoid(mlp(x.mean((2, 3)), a.fc1, a.fc2) + mlp(x.amax((2, 3)), a.fc1, a.fc2))


class GatherConv(nn.Module):
    """(e) gather-excite: a depthwise strided conv gathers, upsampled, then sigmoid: a spatial gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gather = nn.Conv2d(C, C, 3, stride=2, padding=1, groups=C)

    def forward(self, x):
        return x * torch.sigmoid(F.interpolate(self.gather(x), size=x.shape[-2:]))

    def reference(self, x):
        g = self.gather
        small = F.conv2d(x, g.weight.double(), g.bias.double(), stride=2, padding=1, groups=C)
        return torch.sigmoid(F.interpolate(small, size=x.shape[-2:])).mean((2, 3))


class GatherPool(nn.Module):
    """(e) gather-excite: sigmoid of a 2x2 average pool [N, C, H/2, W/2], upsampled to multiply."""

    def forward(self, x):
        return x * F.interpolate(torch.sigmoid(F.avg_pool2d(x, 2)), scale_factor=2)

    def reference(self, x):
        return torch.sigmoid(F.avg_pool2d(x, 2)).mean((2, 3))


class Residual(nn.Module):
    """The SE-style block on a residual branch."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x):
        return x + self.block(F.relu(x))


class Net(nn.Module):
    """Every pattern as a ResNet-style block, and three things that are no gates: Swish after the
    stem (x * sigmoid(x)), CBAM's spatial attention map, a sigmoid classifier head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, C, 3, padding=1)
        self.layer1 = nn.Sequential(Residual(SequentialSE()), Residual(FcSigmoid()))
        self.layer2 = nn.Sequential(*map(Residual, [HardModule(), HardFunction(), Eca(), TimmEca(C), TimmCeca(C)]))
        self.layer3 = nn.Sequential(*map(Residual, [Cbam(), TimmCbam(C), GatherConv(), GatherPool()]))
        self.head = nn.Linear(C, 3)

    def forward(self, x):
        x = self.stem(x)
        x = x * torch.sigmoid(x)
        return torch.sigmoid(self.head(self.layer3(self.layer2(self.layer1(x))).mean((2, 3))))


EXPECTED = [  # name, kind, hooked path, call site
    ("SE_2_1", "se", "layer1.0.block.se.4", None),
    ("SE_2_2", "se", "layer1.1.block", "sigmoid:0"),
    ("SE_3_1", "se", "layer2.0.block.gate", None),
    ("SE_3_2", "se", "layer2.1.block", "hardsigmoid:0"),
    ("SE_3_3", "eca", "layer2.2.block", "sigmoid:0"),
    ("SE_3_4", "eca", "layer2.3.block.gate", None),
    ("SE_3_5", "eca", "layer2.4.block.gate", None),
    ("SE_4_1", "cbam-channel", "layer3.0.block", "sigmoid:0"),
    ("SE_4_2", "cbam-channel", "layer3.1.block.channel.gate", None),
    ("SE_4_3", "ge", "layer3.2.block", "sigmoid:0"),
    ("SE_4_4", "ge", "layer3.3.block", "sigmoid:0"),
]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 6, 6)
    return Net().eval(), x, torch.randint(0, 3, (64,))


def block_inputs(model: nn.Module, x: torch.Tensor, amp: bool = False) -> dict[str, torch.Tensor]:
    """Brute force: the input of every `block` module over all of x, by plain pre-hooks."""
    blocks = {p: m for p, m in model.named_modules() if p.endswith(".block")}
    seen: dict[str, list[torch.Tensor]] = {p: [] for p in blocks}
    handles = [m.register_forward_pre_hook(lambda m, i, p=p: seen[p].append(i[0])) for p, m in blocks.items()]
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            for i in range(0, len(x), 32):
                model(x[i:i + 32])
    finally:
        for h in handles:
            h.remove()
    return {p: torch.cat(v) for p, v in seen.items()}


def block_of(model: nn.Module, gate_path: str) -> tuple[str, nn.Module]:
    path = gate_path[:gate_path.index(".block") + len(".block")]
    return path, model.get_submodule(path)


def test_traced_gates_are_counted_in_forward_order_named_and_kinded(net):
    model, x, _ = net
    gates = find_gates(model, example=x[:2])
    assert [(g.name, g.kind, g.path, g.call) for g in gates] == EXPECTED
    assert [g.depth for g in gates] == list(range(1, 12)) and {g.channels for g in gates} == {C}
    # the float32 re-run starts from the channel means where the excitation reads only them (se, eca), never
    # where it reads the maxima (cbam-channel) or positions (ge); test_statistics_... checks both against float64
    assert [g.pooled for g in gates] == [g.kind in ("se", "eca") for g in gates] == [True] * 7 + [False] * 4
    said = gate_precision(model, gates, "bf16")
    assert said["SE_4_2"] == "its SE block layer3.1.block.channel re-run in float32 on the upcast input, outside bf16 autocast"


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "bf16"])
def test_statistics_equal_the_gate_each_block_computes(net, amp):
    """Each gate's class means and variances against its block's formula in float64 on the block
    inputs (recorded by plain pre-hooks; bf16 ones under AMP, where the block is re-run in float32).
    Tolerances: float32 rounding, 1e-6 of the means; the squeeze inputs z likewise. Planted
    negatives: a block's formula on its neighbour's input misses by over 1e-4; under AMP so does
    the network's own bf16 excitation."""
    model, x, y = net
    stats = collect(model, batches(x, y, 32), 3, amp="bf16" if amp else None, progress=False)
    inputs = block_inputs(model, x, amp)
    for gate in stats.gates:
        path, block = block_of(model, gate.path)
        truth = block.reference(inputs[path].double())
        _, mean, var = brute_moments(truth, y, 3)
        count, m, v = stats_moments(stats, gate.name)
        assert torch.equal(count, torch.bincount(y, minlength=3))
        torch.testing.assert_close(m, mean, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(v, var, rtol=1e-3, atol=1e-8)
        _, z_mean, z_var = brute_moments(inputs[path].double().mean((2, 3)), y, 3)
        z = stats_moments(stats.inputs, gate.name)
        torch.testing.assert_close(z[1], z_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(z[2], z_var, rtol=1e-3, atol=1e-7)
    block, m = model.layer1[1].block, stats_moments(stats, "SE_2_2")[1]
    assert (brute_moments(block.reference(inputs["layer1.0.block"].double()), y, 3)[1] - m).abs().max() > 1e-4
    if amp:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            own = torch.sigmoid(block.fc2(F.relu(block.fc1(inputs["layer1.1.block"].mean((2, 3))))))
        assert (brute_moments(own.double(), y, 3)[1] - m).abs().max() > 1e-4
    said = gate_precision(model, stats.gates, "bf16" if amp else None)["SE_2_2"]
    assert said == ("its SE block layer1.1.block re-run in float32 on its input's channel means, pooled in float32, "
                    "outside bf16 autocast" if amp else "float32 sigmoid of the upcast pre-activation, outside autocast")


class GateAfterConv(nn.Module):
    """torch.sigmoid in a residual block's own forward, after its conv: the module running it takes
    the block input, not the gated feature map, so there is no block to re-run or pool."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(C, C, 3, padding=1), nn.Linear(C, C)

    def forward(self, x):
        out = self.conv(x)
        return x + out * torch.sigmoid(self.fc(out.mean((2, 3))))[:, :, None, None]


def test_a_gate_without_a_block_keeps_the_float32_sigmoid_of_its_pre_activation():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, C, 1), nn.Sequential(GateAfterConv(), GateAfterConv())).eval()
    x, y = torch.randn(64, 3, 6, 6), torch.randint(0, 3, (64,))
    stats = collect(model, batches(x, y, 32), 3, amp="bf16", progress=False)
    assert [(g.name, g.path, g.call, g.block) for g in stats.gates] == [
        ("SE_1", "1.0", "sigmoid:0", None), ("SE_2", "1.1", "sigmoid:0", None)]
    assert stats.inputs is None
    assert set(gate_precision(model, stats.gates, "bf16").values()) == {
        "float32 sigmoid of the upcast pre-activation, outside autocast"}
    seen = {i: [] for i in range(2)}
    handles = [model[1][i].fc.register_forward_hook(lambda m, a, o, i=i: seen[i].append(o)) for i in range(2)]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    for h in handles:
        h.remove()
    for i, gate in enumerate(stats.gates):
        assert seen[i][0].dtype == torch.bfloat16
        _, mean, var = brute_moments(torch.sigmoid(torch.cat(seen[i]).double()), y, 3)
        _, m, v = stats_moments(stats, gate.name)
        torch.testing.assert_close(m, mean, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(v, var, rtol=1e-3, atol=1e-8)


class NoGates(nn.Module):
    """SiLU as nn.SiLU, as x * sigmoid(x) (also at 1x1 resolution) and as timm's Swish; CBAM's spatial
    attention map [N, 1, H, W]; a sigmoid head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.act, self.swish = nn.Conv2d(3, C, 3, padding=1), nn.SiLU(), Swish()
        self.spatial, self.head = SpatialAttn(), nn.Linear(C, 3)

    def forward(self, x):
        x = self.swish(self.act(self.stem(x)))
        x = self.spatial(x * torch.sigmoid(x))
        v = F.adaptive_avg_pool2d(x, 1)
        return torch.sigmoid(self.head((v * torch.sigmoid(v)).flatten(1)))


def test_silu_spatial_attention_and_a_sigmoid_head_are_no_gates():
    model, x, y = NoGates(), torch.randn(8, 3, 6, 6), torch.randint(0, 3, (8,))
    with pytest.raises(NoGatesError, match="NoGates has no SE gate: .* nor a sigmoid or hard sigmoid multiplying"):
        find_gates(model, example=x)
    with pytest.raises(NoGatesError, match="traced forward pass"):
        collect(model, batches(x, y, 4), 3, progress=False)
    with pytest.raises(OptionError, match="example input"):
        find_gates(model, traced=True)


@pytest.mark.parametrize("spec", ["se_resnet20", "timm:seresnet18", "timm:tinynet_e"])
def test_the_table_still_wins_and_the_trace_finds_the_same_gates(spec):
    """On networks known by type, an example changes nothing; forcing the trace finds the same gates
    (the SiLU activations of tinynet_e, an EfficientNet, are none of them)."""
    model = timm.create_model(spec[5:]) if spec.startswith("timm:") else build_model(spec)
    example = torch.randn(2, 3, 16, 16)
    table = find_gates(model)
    assert find_gates(model, example=example) == table and {(g.kind, g.call, g.block) for g in table} == {("se", None, None)}
    traced = find_gates(model, example=example, traced=True)
    assert [(g.name, g.path, g.channels, g.kind) for g in traced] == [(g.name, g.path, g.channels, "se") for g in table]


def test_a_call_gate_is_never_hooked_as_a_module_output(net):
    gate = find_gates(net[0], example=net[1][:2])[1]
    with pytest.raises(GateValueError, match="is the call sigmoid:0 inside 'layer1.1.block'"):
        with ForwardHooks(net[0], [gate], lambda g, out: None):
            pass


def test_meta_json_records_each_gate_kind_and_site(net):
    """What a run folder's meta.json holds of the statistics (`describe`, see runs.folder), through
    JSON and back."""
    model, x, y = net
    stats = collect(model, batches(x[:32], y[:32], 32), 3, inputs=False, progress=False)
    description = json.loads(json.dumps(stats.describe()))
    assert [(g["name"], g["kind"], g["path"], g["call"]) for g in description["gates"]] == EXPECTED
    assert GateStats.from_state(description, stats.state_dict()).gates == stats.gates
