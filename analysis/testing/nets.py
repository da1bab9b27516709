"""A planted SE model, its data, and a brute-force gate recorder.

    model, (x, y) = PlantedNet().eval(), planted_data(1200)
    stats = collect(model, batches(x, y, 100), num_classes=10)
    every = record_gates(model, [g.path for g in stats.gates], x)   # [N, C] per gate, by plain hooks
"""

from __future__ import annotations

import torch
from torch import nn

from analysis.models.architectures import SqueezeExcite


class PlantedBlock(nn.Module):
    """An SE block that reads only the pooled input channels in `reads`; passes x through.

    The gate therefore carries class information exactly when `reads` holds class channels.
    """

    def __init__(self, channels: int, reads: slice, seed: int) -> None:
        super().__init__()
        self.se = SqueezeExcite(channels, reduction=4)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            w = torch.randn(self.se.fc1.weight.shape, generator=g)
            mask = torch.zeros(channels)
            mask[reads] = 1.0
            self.se.fc1.weight.copy_(w * mask * 1.5)
            self.se.fc1.bias.zero_()
            self.se.fc2.weight.copy_(torch.randn(self.se.fc2.weight.shape, generator=g))
            self.se.fc2.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.se(x)
        return x


class PlantedNet(nn.Module):
    """Stage layer1 (3 blocks) gates on noise channels, layer2 (3 blocks) on class channels.

    Gate names are SE_2_1..SE_2_3 (class-agnostic) and SE_3_1..SE_3_3 (class-specific).
    """

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        half = channels // 2
        self.layer1 = nn.Sequential(*[PlantedBlock(channels, slice(0, half), i) for i in range(3)])
        self.layer2 = nn.Sequential(*[PlantedBlock(channels, slice(half, channels), 10 + i) for i in range(3)])
        self.fc = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer2(self.layer1(x)).mean((2, 3)))


def planted_data(n: int, num_classes: int = 10, channels: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose first half of channels is class-free noise and second half a class offset."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n,), generator=g)
    class_offsets = torch.randn(num_classes, channels // 2, generator=torch.Generator().manual_seed(99))
    x = torch.randn(n, channels, 6, 6, generator=g) * 0.5
    x += torch.randn(n, channels, 1, 1, generator=g)  # per-sample offsets so every gate varies
    x[:, channels // 2 :] += class_offsets[y][:, :, None, None] * 1.5
    return x, y


def batches(x: torch.Tensor, y: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(images, labels, sample ids) batches of `size`; the ids are the row indices."""
    ids = torch.arange(len(y))
    return [(x[i : i + size], y[i : i + size], ids[i : i + size]) for i in range(0, len(y), size)]


def record_gates(model: nn.Module, paths: list[str], x: torch.Tensor, autocast: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Brute force: every gate vector of every sample, [N, C] float64, by plain hooks."""
    modules = dict(model.named_modules())
    seen: dict[str, list[torch.Tensor]] = {p: [] for p in paths}
    handles = [
        modules[p].register_forward_hook(lambda m, i, o, p=p: seen[p].append(o.detach().flatten(2).float().mean(2) if o.dim() > 2 else o.detach()))
        for p in paths
    ]
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
            for i in range(0, len(x), 64):
                model(x[i : i + 64])
    finally:
        for h in handles:
            h.remove()
    return {p: torch.cat(v).double() for p, v in seen.items()}
