"""Onset: the first block from which a notion holds in it and every later block, and how sure that is.

    first = onset_index(passes)              # passes [..., G] bool, blocks in depth order -> [...]
    record = onset_record(point, draws, names, ...)

A notion (analysis.measures.notions) says per block whether it holds; the onset is where it starts
to hold for good. Its certainty is the share of draws (shard-bootstrap resamples of the data, times
the untrained control's seeds) whose own passes give the same block: a single number cannot say
whether the next resample or the next untrained network would move the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

NONE = "none"  # the shares' key for draws in which no block holds to the end


def onset_index(passes: np.ndarray) -> np.ndarray:
    """Index of the first block from which every block, itself included, passes: passes [..., G]
    bool (blocks in depth order) -> [...] int64, G where the last block fails."""
    holds_to_end = np.flip(np.logical_and.accumulate(np.flip(passes, -1), -1), -1)
    g = passes.shape[-1]
    return np.where(holds_to_end.any(-1), holds_to_end.argmax(-1), g).astype(np.int64)


def onset_record(point: int, draws: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """The onset of the point estimates (`point`, an index into `names` or len(names) for none) with
    its certainty: `shares` maps each block some draw gave (and NONE) to its share of the draws
    [D] (onset indices), in depth order; `certainty` is the point onset's share (None without
    draws)."""
    g = len(names)
    counts = np.bincount(draws.ravel(), minlength=g + 1) if draws.size else np.zeros(g + 1, dtype=np.int64)
    keys = [*names, NONE]
    shares = {keys[i]: float(counts[i] / draws.size) for i in np.flatnonzero(counts)}
    return {
        "status": "found" if point < g else "none",
        "block": names[point] if point < g else None,
        "certainty": float(counts[point] / draws.size) if draws.size else None,
        "shares": shares,
        "draws": int(draws.size),
    }


def undetermined(reason: str) -> dict[str, Any]:
    """The record of a notion that cannot be answered, and why: never a block, never a pass."""
    return {"status": "undetermined", "reason": reason, "block": None, "certainty": None, "shares": {}, "draws": 0}
