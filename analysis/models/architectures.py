"""SE-ResNets built from a paper-faithful SE block, with the paper's squeeze ablations.

Two families share one builder: `small` (3 stages of basic blocks for 28x28/32x32 inputs,
depth 6n+2 as in ResNet-20/56) and `imagenet` (bottleneck stages conv2_x..conv5_x, e.g. 3,4,6,3
for SE-ResNet-50). Stages are named `layer1..` so gate names follow ResNet numbering (`SE_2_1`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from analysis.errors import ModelSpecError

SE_VARIANTS = ("se", "nosqueeze", "none")
IMAGENET_STAGES = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class SqueezeExcite(nn.Module):
    """Squeeze (global average pool) and excitation (FC C->C/r, ReLU, FC C/r->C, sigmoid), then scale.

    The sigmoid lives in `self.gate` so that hooks see the gate `s` itself, shape [N, C]; `se_gate`
    tells gate discovery (analysis.capture.gates) where it is, `se_pooled` that the excitation reads
    the input only through its channel means (so the float32 re-run under AMP starts from them).
    """

    se_gate = "gate"
    se_pooled = True

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.gate(self.fc2(self.relu(self.fc1(x.mean((2, 3))))))
        return x * s[:, :, None, None]


class NoSqueezeExcite(nn.Module):
    """The paper's NoSqueeze ablation: no pooling, the two FCs become 1x1 convolutions.

    The gate is then spatial, shape [N, C, H, W]; the collector averages it over positions.
    """

    se_gate = "gate"

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.conv2(self.relu(self.conv1(x))))


def _excitation(se: str, channels: int, reduction: int) -> nn.Module:
    if se == "se":
        return SqueezeExcite(channels, reduction)
    if se == "nosqueeze":
        return NoSqueezeExcite(channels, reduction)
    return nn.Identity()


def _shortcut(in_ch: int, out_ch: int, stride: int) -> nn.Module:
    if stride == 1 and in_ch == out_ch:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions; SE on the residual branch before the addition."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int, se: str, reduction: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.se = _excitation(se, width, reduction)
        self.shortcut = _shortcut(in_ch, width, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4); SE on the residual branch before the addition."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, se: str, reduction: int) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.se = _excitation(se, out_ch, reduction)
        self.shortcut = _shortcut(in_ch, out_ch, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu(out + self.shortcut(x))


class SEResNet(nn.Module):
    """A ResNet whose residual blocks carry an SE block (or an ablation of it)."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        stage_blocks: tuple[int, ...],
        stage_widths: tuple[int, ...],
        stem: nn.Module,
        stem_channels: int,
        num_classes: int,
        se: str,
        reduction: int,
    ) -> None:
        super().__init__()
        self.stem = stem
        in_ch = stem_channels
        for i, (blocks, width) in enumerate(zip(stage_blocks, stage_widths)):
            layer = []
            for j in range(blocks):
                stride = 2 if (j == 0 and i > 0) else 1
                layer.append(block(in_ch, width, stride, se, reduction))
                in_ch = width * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
        self.num_stages = len(stage_blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def se_resnet(
    depth: int,
    family: str = "small",
    se: str = "se",
    reduction: int = 16,
    num_classes: int = 10,
    in_channels: int = 3,
    width: int | None = None,
) -> SEResNet:
    """Build an SE-ResNet.

    family="small": depth = 6n+2 (20, 32, 56, 110), stages of n basic blocks, widths w, 2w, 4w
    (w=16 by default). family="imagenet": depth in 50/101/152, bottleneck stages, widths
    w..8w (w=64 by default). `se` is "se", "nosqueeze" (the paper's squeeze ablation) or "none".
    """
    if se not in SE_VARIANTS:
        raise ModelSpecError(f"se must be one of {', '.join(SE_VARIANTS)}, not {se!r}.")
    if reduction < 1:
        raise ModelSpecError(f"reduction ratio must be at least 1, not {reduction}.")
    if family == "small":
        if depth < 8 or (depth - 2) % 6:
            raise ModelSpecError(f"a small-image SE-ResNet needs depth 6n+2 (20, 32, 56, ...), not {depth}.")
        w = width or 16
        n = (depth - 2) // 6
        stem = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)
        )
        return SEResNet(BasicBlock, (n, n, n), (w, 2 * w, 4 * w), stem, w, num_classes, se, reduction)
    if family == "imagenet":
        if depth not in IMAGENET_STAGES:
            raise ModelSpecError(f"an ImageNet SE-ResNet needs depth 50, 101 or 152, not {depth}.")
        w = width or 64
        stem = nn.Sequential(
            nn.Conv2d(in_channels, w, 7, 2, 3, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        widths = (w, 2 * w, 4 * w, 8 * w)
        return SEResNet(Bottleneck, IMAGENET_STAGES[depth], widths, stem, w, num_classes, se, reduction)
    raise ModelSpecError(f"family must be 'small' or 'imagenet', not {family!r}.")


ARCHITECTURES: dict[str, Callable[..., SEResNet]] = {
    "se_resnet20": lambda **kw: se_resnet(20, "small", **kw),
    "se_resnet32": lambda **kw: se_resnet(32, "small", **kw),
    "se_resnet56": lambda **kw: se_resnet(56, "small", **kw),
    "se_resnet50": lambda **kw: se_resnet(50, "imagenet", **kw),
    "se_resnet101": lambda **kw: se_resnet(101, "imagenet", **kw),
}


def build_model(arch: str, **kwargs: object) -> SEResNet:
    """Build one of the project's architectures by name, e.g. build_model("se_resnet20", se="none")."""
    if arch not in ARCHITECTURES:
        raise ModelSpecError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}.")
    try:
        return ARCHITECTURES[arch](**kwargs)
    except TypeError as e:
        raise ModelSpecError(f"bad arguments for {arch}: {e}.") from None
