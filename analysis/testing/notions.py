"""Planted cases with a known answer for each notion of "class-specific" (analysis.measures.notions).

    trained, controls = notion_cases()            # FakeStats, {seed: FakeStats}: onsets SE_2, SE_3, SE_4
    net, (x, y) = FlatProfileNet(), flat_data(2000)   # torchvision SE blocks on a nearly flat common curve

Each planted block's class-mean curves are m_k = m + what the class adds, with Gaussian image noise
around them, so every population value (the class means, the block's gate SD) is known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torchvision.ops import SqueezeExcitation

from analysis.testing.fakes import FakeStats, balanced_labels

K, C = 6, 32  # classes and channels of the planted blocks
NOISE = 0.02  # image-to-image SD of every gate, in gate units


@dataclass(frozen=True)
class Planted:
    """One planted block: its class-mean curves [K, C] and its within-class SD."""

    means: np.ndarray
    noise: float = NOISE

    def sample(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Gate values [N, C] of images of the given classes."""
        return self.means[labels] + self.noise * rng.normal(size=(labels.size, self.means.shape[1]))

    def shape_sep(self) -> float:
        """The population shape_sep: the residual of the true class means over the true gate SD
        (balanced classes)."""
        m = self.means.mean(0)
        d, u = self.means - m, m - m.mean()
        r = d - d.mean(1, keepdims=True)
        r -= np.outer(r @ u / (u @ u), u)
        sd = np.sqrt(self.noise**2 + d.var(0).mean() + m.var())
        return float(np.sqrt((r * r).mean()) / sd)


def planted_block(kind: str, rng: np.random.Generator, *, spread: float = 0.1, size: float = 0.05) -> Planted:
    """A block around a common curve m (0.5 + spread * N(0, 1) per channel): `free` (no class
    effect), `tiny` (each class shifts every gate by ~1e-4: detectable with little noise, not
    large), `shift` (class k moves every gate by a_k and scales m - mean(m) by 1 + b_k: large, no
    shape), `own` (each class opens its own channels: shape), `weak` (unstructured class effects a
    tenth of `own`'s, as an untrained network shows)."""
    m = 0.5 + spread * rng.normal(size=C)
    if kind == "free":
        return Planted(np.tile(m, (K, 1)))
    if kind == "tiny":
        return Planted(m + 1e-4 * rng.normal(size=(K, 1)), noise=1e-4)
    if kind == "shift":
        return Planted(m + size * rng.normal(size=(K, 1)) + 0.3 * rng.normal(size=(K, 1)) * (m - m.mean()))
    if kind in ("own", "weak"):
        effect = size * rng.normal(size=(K, C)) * (1.0 if kind == "own" else 0.1)
        return Planted(m + effect - effect.mean(0))
    raise ValueError(f"no planted block kind {kind!r}")


TRAINED = ("free", "tiny", "shift", "own", "own")  # onsets: detectable SE_2, magnitude SE_3, shape SE_4
CONTROL = ("weak",) * len(TRAINED)


def planted_stats(blocks: dict[str, Planted], n: int, seed: int, **kwargs) -> FakeStats:
    """FakeStats of N images (balanced classes) drawn from planted blocks."""
    rng = np.random.default_rng(seed)
    y = balanced_labels(n, K, rng)
    return FakeStats({name: b.sample(y, rng) for name, b in blocks.items()}, y, K, **kwargs)


def notion_cases(n: int = 1800, seeds: tuple[int, ...] = (1, 2, 3)) -> tuple[FakeStats, dict[int, FakeStats]]:
    """The trained network (TRAINED blocks SE_1..SE_5) and one untrained control per seed (CONTROL
    blocks: weak, unstructured class effects; a fresh draw per seed)."""
    rng = np.random.default_rng(0)
    trained = {f"SE_{i}": planted_block(kind, rng) for i, kind in enumerate(TRAINED, start=1)}
    controls = {}
    for seed in seeds:
        crng = np.random.default_rng(100 + seed)
        blocks = {f"SE_{i}": planted_block(kind, crng) for i, kind in enumerate(CONTROL, start=1)}
        controls[seed] = planted_stats(blocks, n, 200 + seed, shards=1, permutations=0)
    return planted_stats(trained, n, 7), controls


class FlatBlock(nn.Module):
    """A torchvision SqueezeExcitation block reading only the input channels `reads`; passes x on.
    `strength` scales its excitation, so a small one keeps the gates near 0.5 (`centre` flattens
    the common curve)."""

    def __init__(self, channels: int, reads: slice, seed: int, strength: float) -> None:
        super().__init__()
        self.se = SqueezeExcitation(channels, channels // 4)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            mask = torch.zeros(channels)
            mask[reads] = 1.0
            self.se.fc1.weight.copy_(torch.randn(self.se.fc1.weight.shape, generator=g) * mask[None, :, None, None])
            self.se.fc1.bias.zero_()
            self.se.fc2.weight.copy_(torch.randn(self.se.fc2.weight.shape, generator=g) * strength)
            self.se.fc2.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.se(x)
        return x


class FlatProfileNet(nn.Module):
    """Six torchvision SE blocks (issue 23): SE_2_1..SE_2_3 read class-free channels, SE_3_1..SE_3_3
    the class channels, each with its excitation centred (`centre`) so that the all-class curve is
    nearly flat (spread ~1e-3) while the class curves differ by ~0.05-0.1 gate units."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        half = channels // 2
        self.layer1 = nn.Sequential(*[FlatBlock(channels, slice(0, half), i, 1.0) for i in range(3)])
        self.layer2 = nn.Sequential(*[FlatBlock(channels, slice(half, channels), 10 + i, 0.1) for i in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(self.layer1(x))

    def centre(self, x: torch.Tensor) -> FlatProfileNet:
        """Set each excitation's last bias so that its pre-activation has mean 0 over x: gates ~0.5
        on average in every channel, a flat common curve."""
        with torch.no_grad():
            for block in [*self.layer1, *self.layer2]:
                se = block.se
                hidden = se.activation(se.fc1(se.avgpool(x)))
                se.fc2.bias.sub_(se.fc2(hidden).mean((0, 2, 3)))
        return self.eval()

    def gates(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        """Brute force: every block's gate of every image [N, C], float32 as hooked, by name."""
        names = [f"SE_{2 + i // 3}_{i % 3 + 1}" for i in range(6)]
        with torch.no_grad():
            return {name: b.se.scale_activation(b.se.fc2(b.se.activation(b.se.fc1(b.se.avgpool(x))))).flatten(1).numpy()
                    for name, b in zip(names, [*self.layer1, *self.layer2])}


def flat_data(n: int, classes: int = 10, channels: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images [N, channels, 4, 4]: the first half of the channels class-free noise, the second half
    noise plus a class offset (offsets centred over the classes), balanced classes."""
    g = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % classes)[torch.randperm(n, generator=g)]
    offsets = torch.randn(classes, channels // 2, generator=torch.Generator().manual_seed(99))
    offsets -= offsets.mean(0)
    x = torch.randn(n, channels, 4, 4, generator=g) * 0.5
    x[:, channels // 2 :] += offsets[y][:, :, None, None]
    return x, y

