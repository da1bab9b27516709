"""Moments that keep narrow gates' digits (the float32 gate under bf16 is tested in test_stats.py)."""

from __future__ import annotations

import torch

from analysis.capture.gates import Gate
from analysis.capture.stats import GateStats, StatsConfig


def test_narrow_gates_keep_their_variance():
    """Gates with std 1e-6 around 0.54 in float32: the shifted moments give the float64 brute-force
    variance to 1e-6 relative (plain sum and sumsq cancel there: their error is printed, not bounded)."""
    g = torch.Generator().manual_seed(0)
    n, c, k = 20_000, 8, 2
    values = (0.54 + 1e-6 * torch.randn(n, c, generator=g, dtype=torch.float64)).float()
    labels = torch.randint(0, k, (n,), generator=g)
    stats = GateStats([Gate("SE_2_1", 1, "g", c)], StatsConfig(k, shards=1, permutations=0))
    plain_sum, plain_sq = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, 500):
        batch = values[start:start + 500]
        stats.begin_batch(labels[start:start + 500], torch.arange(start, start + len(batch)))
        stats.update("SE_2_1", batch)
        stats.end_batch()
        plain_sum += batch.double().sum(0)
        plain_sq += (batch.double() ** 2).sum(0)
    stats.finish()
    count, total, total_sq = (m.sum((0, 1)) for m in stats.moments("SE_2_1"))
    var = total_sq / count - (total / count) ** 2
    truth = values.double().var(0, unbiased=False)
    assert float(((var - truth) / truth).abs().max()) < 1e-6
    plain = plain_sq / n - (plain_sum / n) ** 2
    print(f"relative variance error: shifted {float(((var - truth) / truth).abs().max()):.1e}, "
          f"plain {float(((plain - truth) / truth).abs().max()):.1e}")
