"""Brute-force references for GateStats: per-class moments and histograms from every gate value.

    count, mean, var = brute_moments(values, labels, k)      # from the values themselves
    n, m, v = stats_moments(stats, "SE_3_1")                 # the same, read from GateStats
"""

from __future__ import annotations

import numpy as np
import torch

from analysis.capture.stats import GateStats


def brute_moments(g: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(count [K], mean [K, C], population variance [K, C]) of gate values g [N, C] by label y [N]."""
    count = torch.bincount(y, minlength=k)
    mean = torch.stack([g[y == c].mean(0) for c in range(k)])
    var = torch.stack([g[y == c].var(0, unbiased=False) for c in range(k)])
    return count, mean, var


def class_moments(
    count: torch.Tensor, s: torch.Tensor, sq: torch.Tensor, shift: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(count [K], mean [K, C], variance [K, C]) from shifted moments summed over their first axis."""
    n, s, sq = count.sum(0), s.sum(0), sq.sum(0)
    m = s / n[:, None]
    return n, shift + m, sq / n[:, None] - m**2


def stats_moments(stats: GateStats, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """brute_moments' three tables as GateStats holds them for gate `name`."""
    return class_moments(*stats.moments(name), stats.shift(name))


def brute_histogram(v: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Counts of v [n] over cells (underflow, bins, overflow) of edges [B + 1], by bucketize."""
    return torch.bincount(torch.bucketize(v, edges, right=True), minlength=edges.numel() + 1)


def shape_separation(v: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(profile_sep, shape_sep) of raw gate values v [N, C] by label y [N], by their definition: the
    class means m_k, their mean m, the rms of m_k - m and of what a per-class least-squares shift and
    scale of m (design [1, m - mean m]) leaves, each over the SD of every value (measures.profiles)."""
    mk = np.stack([v[y == k].mean(0) for k in np.unique(y)])
    m = mk.mean(0)
    d = (mk - m).T
    design = np.stack([np.ones_like(m), m - m.mean()], axis=1)
    residual = d - design @ np.linalg.lstsq(design, d, rcond=None)[0]
    sd = v.std()
    return float(np.sqrt((d**2).mean()) / sd), float(np.sqrt((residual**2).mean()) / sd)
