"""Gate discovery: counts and names against each architecture's published block layout."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from torch import nn

from analysis import Gate, NoGatesError, find_gates
from analysis.models.architectures import build_model


def names(model: nn.Module) -> list[str]:
    return [g.name for g in find_gates(model)]


@pytest.mark.parametrize(
    ("arch", "stages"),
    [("se_resnet20", (3, 3, 3)), ("se_resnet56", (9, 9, 9)), ("se_resnet50", (3, 4, 6, 3))],
)
def test_project_models_have_one_gate_per_residual_block(arch, stages):
    expected = [f"SE_{s + 2}_{b + 1}" for s, n in enumerate(stages) for b in range(n)]
    assert names(build_model(arch)) == expected


def test_se_resnet50_gates_match_the_paper():
    gates = find_gates(build_model("se_resnet50"))
    assert [g.name for g in gates][:4] == ["SE_2_1", "SE_2_2", "SE_2_3", "SE_3_1"]
    assert gates[-1] == Gate("SE_5_3", 16, "layer4.2.se.gate", 2048)
    assert [g.channels for g in gates] == [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3


@pytest.mark.parametrize("variant", ["nosqueeze", "none"])
def test_ablation_variants(variant):
    model = build_model("se_resnet20", se=variant)
    if variant == "none":
        with pytest.raises(NoGatesError, match="SqueezeExcite"):
            find_gates(model)
    else:
        assert len(find_gates(model)) == 9


# Expected counts are the block layouts published for each family (blocks that carry SE).
TIMM = [
    ("seresnet18", 8, "SE_2_1", "SE_5_2"),  # 2,2,2,2 basic blocks
    ("seresnet50", 16, "SE_2_1", "SE_5_3"),  # 3,4,6,3 bottlenecks
    ("legacy_seresnet18", 8, "SE_2_1", "SE_5_2"),  # senet.py SEModule with .sigmoid
    ("seresnext26d_32x4d", 8, "SE_2_1", "SE_5_2"),  # 2,2,2,2
    ("efficientnet_b0", 16, "SE_2_1", "SE_8_1"),  # 16 MBConv blocks in 7 stages, all with SE
    ("mobilenetv3_large_100", 8, "SE_4_1", "SE_7_3"),  # SE in 8 of the 15 bnecks
    ("regnety_002", 13, "SE_2_1", "SE_5_7"),  # depths 1,1,4,7
    ("rexnet_100", 13, "SE_1", "SE_13"),  # SE in the 13 blocks after the first three
]


@pytest.mark.parametrize(("name", "count", "first", "last"), TIMM)
def test_timm_families(name, count, first, last):
    model = timm.create_model(name, pretrained=False)
    gates = find_gates(model)
    assert len(gates) == count
    assert (gates[0].name, gates[-1].name) == (first, last)
    assert [g.depth for g in gates] == list(range(1, count + 1))


TORCHVISION = [
    ("efficientnet_b0", 16, "SE_2_1", "SE_8_1"),
    ("efficientnet_v2_s", 30, "SE_5_1", "SE_7_15"),  # SE only in the 6+9+15 MBConv blocks
    ("mobilenet_v3_large", 8, "SE_1", "SE_8"),  # hard-sigmoid gates
    ("mobilenet_v3_small", 9, "SE_1", "SE_9"),
    ("regnet_y_400mf", 16, "SE_2_1", "SE_5_6"),  # depths 1,3,6,6
]


@pytest.mark.parametrize(("name", "count", "first", "last"), TORCHVISION)
def test_torchvision_families(name, count, first, last):
    gates = find_gates(torchvision.models.get_model(name, weights=None))
    assert len(gates) == count
    assert (gates[0].name, gates[-1].name) == (first, last)


def test_declared_channels_equal_the_hooked_tensor():
    model = timm.create_model("efficientnet_b0", pretrained=False).eval()
    gates = find_gates(model)
    modules = dict(model.named_modules())
    seen = {}
    handles = [modules[g.path].register_forward_hook(lambda m, i, o, g=g: seen.__setitem__(g.name, o.shape[1])) for g in gates]
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    for h in handles:
        h.remove()
    assert seen == {g.name: g.channels for g in gates}


def test_plain_model_error_lists_what_was_looked_for():
    with pytest.raises(NoGatesError) as info:
        find_gates(torchvision.models.resnet18(weights=None))
    message = str(info.value)
    assert "ResNet has no SE gate" in message
    assert "torchvision.ops.misc.SqueezeExcitation" in message and "--gates" in message
    assert "find_gates(model, example=x)" in message  # what a Python user passes


def test_user_pattern_names_modules_in_forward_order():
    model = torchvision.models.resnet18(weights=None)
    gates = find_gates(model, r"layer\d\.\d\.relu$")
    assert [g.path for g in gates][:2] == ["layer1.0.relu", "layer1.1.relu"]
    assert [g.name for g in gates][:2] == ["SE_2_1", "SE_2_2"] and gates[0].channels is None
    with pytest.raises(NoGatesError, match="not a valid regular expression"):
        find_gates(model, "(")
    with pytest.raises(NoGatesError, match="matching"):
        find_gates(model, "nothing_here")


def test_compiled_wrapper_is_looked_through():
    model = build_model("se_resnet20")
    assert find_gates(torch.compile(model)) == find_gates(model)
