"""The one place the measures read GateStats through its issue-14 interface.

GateStats gains `shift`, `perm_moments`, `saturation`, an adaptive `histogram` and `inputs` in the
same release as these measures (the contract in the issue-14 notes). Until then each reader below
falls back to what the older GateStats offers, so that nothing else in `measures/` carries a
fallback; at merge each reader becomes a plain call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from analysis.capture import keys
from analysis.measures._arrays import as_numpy
from analysis.measures.saturation import saturation as binned_saturation


def moments(stats: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(count [S, K] int64, sum [S, K, C], sumsq [S, K, C] of x - shift, shift [C]) float64;
    the shift is 0 where GateStats keeps raw sums."""
    count, total, total_sq = (as_numpy(m) for m in stats.moments(name))
    shift = as_numpy(stats.shift(name)) if hasattr(stats, "shift") else np.zeros(total.shape[-1])
    return count, total.astype(np.float64, copy=False), total_sq.astype(np.float64, copy=False), shift.astype(np.float64)


def perm_moments(stats: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(count [P, K], sum [P, K, C], sumsq [P, K, C]) under P relabellings (same shift), or None."""
    if not hasattr(stats, "perm_moments"):
        return None
    count, total, total_sq = (as_numpy(m) for m in stats.perm_moments(name))
    return count, total.astype(np.float64, copy=False), total_sq.astype(np.float64, copy=False)


def histogram(stats: Any, name: str) -> np.ndarray:
    """counts [K, C, B + 2] over each channel's own bins, with an underflow and an overflow bin; an
    older [K, C, B] histogram on [0, 1] gets two empty outer bins (the bin edges do not enter MI)."""
    h = stats.histogram(name)
    if isinstance(h, tuple):
        return as_numpy(h[0])
    return np.pad(as_numpy(h), ((0, 0), (0, 0), (1, 1)))


def saturation_shares(stats: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(share >= 0.9, share <= 0.1) per channel [C]: exact counters, or an older [0, 1] histogram."""
    if hasattr(stats, "saturation"):
        high, low = (as_numpy(x).sum(0).astype(np.float64) for x in stats.saturation(name))
        n = float(as_numpy(stats.moments(name)[0]).sum())
        with np.errstate(divide="ignore", invalid="ignore"):
            return high / n, low / n
    return binned_saturation(as_numpy(stats.histogram(name)).sum(0))


def inputs(stats: Any) -> Any | None:
    """The squeeze inputs' GateStats (same gate names), or None when not collected."""
    return getattr(stats, "inputs", None)


def pseudo_labels(ids: Any, p: int, classes: int | Sequence[int], seed: int) -> np.ndarray:
    """`analysis.capture.keys.pseudo_labels` of the reservoir ids, among `classes` (`present`)."""
    return as_numpy(keys.pseudo_labels(torch.as_tensor(as_numpy(ids), dtype=torch.int64), p, classes, seed))


def present(stats: Any) -> int | tuple[int, ...]:
    """The labels the statistics are over (StatsConfig.present), or their count where stats carry no config."""
    config = getattr(stats, "config", None)
    return config.present if config is not None else len(stats.class_names)


def seed(stats: Any) -> int:
    """The seed of the pseudo-labels (StatsConfig.seed; 0 where stats carry no config)."""
    return int(getattr(getattr(stats, "config", None), "seed", 0))
