"""Planted GateStats made without a model, at any scale.

The dashboard, the reports and their benchmarks need runs of every size, up to ImageNet scale
(1000 classes, ~15k gate channels), without hours of collection. These statistics are what a
collection over `samples_per_class` images per class would give if each gate were Gaussian around
a class-mean profile whose class dependence grows with depth: block i of n has class effect
`specificity * (i / n) ** 2`, so the early blocks are near chance and the late ones class-specific;
the permutation tables are those of labels independent of the class.
"""

from __future__ import annotations

import math

import torch

from analysis.capture.gates import Gate
from analysis.capture.names import stage_name
from analysis.capture.ranges import histogram_edges, shift_and_quantiles
from analysis.capture.stats import RESERVOIR_IDS, RESERVOIR_KEYS, GateStats, StatsConfig
from analysis.errors import OptionError

RESNET50_CHANNELS = (256,) * 3 + (512,) * 4 + (1024,) * 6 + (2048,) * 3
FIRST = 64  # samples of the first batch that sets each channel's histogram edges


def resnet_gates(channels: tuple[int, ...] = RESNET50_CHANNELS, blocks_per_stage: tuple[int, ...] = (3, 4, 6, 3)) -> list[Gate]:
    """Gates named like SE-ResNet's (SE_2_1 .. SE_5_3) with the given channel counts."""
    names = [stage_name(stage + 2, b + 1) for stage, n in enumerate(blocks_per_stage) for b in range(n)]
    if len(names) != len(channels):
        raise OptionError(f"{len(channels)} channel counts for {len(names)} blocks.")
    return [Gate(name, i + 1, f"synthetic.{name}", c) for i, (name, c) in enumerate(zip(names, channels))]


def planted_stats(
    gates: list[Gate],
    num_classes: int,
    samples_per_class: int = 50,
    *,
    specificity: float = 0.15,
    noise: float = 0.05,
    config: StatsConfig | None = None,
    seed: int = 0,
) -> GateStats:
    """GateStats with planted class structure; sample ids are `class * samples_per_class + i`."""
    config = config or StatsConfig(num_classes=num_classes, reservoir=min(16, samples_per_class))
    stats = GateStats(gates, config, [f"class {k}" for k in range(num_classes)], samples=num_classes * samples_per_class)
    g = torch.Generator().manual_seed(seed)
    k, s, n, p, bins = num_classes, config.shards, samples_per_class, config.permutations, config.bins
    shard_of = torch.randint(0, s, (k, n), generator=g)
    count = torch.stack([(shard_of == j).sum(1) for j in range(s)])  # [S, K]
    # Pseudo-labels are independent of the class: each relabelled class holds about N / K samples of all classes.
    pseudo = torch.randint(0, k, (p, k * n), generator=g)
    perm_count = torch.stack([torch.bincount(row, minlength=k) for row in pseudo]).reshape(p, k)  # [P, K]
    for i, gate in enumerate(gates):
        c, t = gate.channels, {}
        effect = specificity * ((i + 1) / len(gates)) ** 2
        base = 0.5 + 0.15 * torch.randn(c, generator=g, dtype=torch.float64)
        mu = (base + effect * torch.randn(k, c, generator=g, dtype=torch.float64)).clamp(0.02, 0.98)  # [K, C]
        shard_mu = mu + noise / math.sqrt(max(n / s, 1)) * torch.randn(s, k, c, generator=g, dtype=torch.float64)
        t["shift"] = base
        t["count"], t["perm_count"] = count.flatten().clone(), perm_count.flatten().clone()
        t["sum"] = (count[..., None] * (shard_mu - base)).view(s * k, c)
        t["sumsq"] = (count[..., None] * ((shard_mu - base) ** 2 + noise**2)).view(s * k, c)
        pooled, spread = mu.mean(0), mu.var(0, unbiased=False) + noise**2  # [C]
        perm_mu = (pooled - base).float() + (spread / (n + 1)).sqrt().float() * torch.randn(p, k, c, generator=g)
        t["perm_sum"] = (perm_count[..., None] * perm_mu).view(p * k, c)  # float32, as GateStats keeps them
        # Histogram: expected counts of N(mu, noise) over edges drawn as GateStats draws them from a
        # first batch (FIRST values of random classes), with under/overflow.
        first = mu[torch.randint(0, k, (FIRST,), generator=g)]
        first += noise * torch.randn(FIRST, c, generator=g, dtype=torch.float64)
        t["edges"] = edges = histogram_edges(shift_and_quantiles(first.clamp(0, 1), bins)[1], config.bounded)
        normal = lambda x: 0.5 * (1 + torch.erf((x - mu[..., None]) / (noise * math.sqrt(2))))  # noqa: E731
        cdf = torch.cat([torch.zeros(k, c, 1), normal(edges[None]), torch.ones(k, c, 1)], -1)  # [K, C, B+3]
        t["hist"] = (cdf.diff(dim=-1) * n).round().int()
        t["sat_high"] = ((1 - normal(torch.tensor(0.9, dtype=torch.float64)[None, None]))[..., 0] * n).round().int()
        t["sat_low"] = (normal(torch.tensor(0.1, dtype=torch.float64)[None, None])[..., 0] * n).round().int()
        r = config.reservoir
        kept = (mu.float().repeat_interleave(r, 0) + noise * torch.randn(k * r, c, generator=g)).clamp(0, 1)
        t["reservoir"] = torch.cat([kept, torch.zeros(1, c)])
        top = mu.float().max(0).values[:, None] + noise * torch.rand(c, config.topk, generator=g).sort(1, descending=True).values
        t["top_values"] = top.clamp(max=1.0)
        t["top_ids"] = (mu.argmax(0)[:, None] * n + torch.arange(config.topk) % n).long()
        t["min"], t["max"] = torch.zeros(c), torch.ones(c)
        t["nonfinite"] = t["below"] = t["above"] = torch.zeros(c, dtype=torch.int64)
        for field in stats.layout.fields:
            stats.set_tensor(f"{gate.name}/{field}", t[field])
    r = config.reservoir
    if stats.sampler is not None:
        stats.set_tensor(RESERVOIR_KEYS, torch.cat([torch.rand(k * r, generator=g, dtype=torch.float64), torch.tensor([torch.inf])]))
        stats.set_tensor(RESERVOIR_IDS, torch.cat([(torch.arange(k)[:, None] * n + torch.arange(r) % n).flatten(), torch.tensor([-1])]))
    return stats
