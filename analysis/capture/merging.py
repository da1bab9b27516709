"""Merging two GateStats of disjoint samples into the statistics of their union (GateStats.merge).

Counts, saturation counters, problem counters add; min and max combine; the reservoir and top-k
are chosen by sample key and value. Moments kept under different shifts are moved to the first
one's shift exactly (`ranges.reshift`); histograms over different edges are moved by bin centre
(`ranges.rebin`), and add exactly when the calibrations match.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from analysis.capture.config import CALIBRATION, COUNTERS
from analysis.capture.keys import top_k
from analysis.capture.ranges import rebin, reshift
from analysis.errors import StatsMismatchError

if TYPE_CHECKING:
    from analysis.capture.stats import GateStats


def merge_into(self: GateStats, other: GateStats, *, inputs: bool = True) -> None:
    """Add `other` (statistics of disjoint samples) into self; the result equals the union's
    (the histogram's exactly when both were calibrated alike, see `ranges`). With `inputs`,
    the squeeze-input statistics are merged too."""
    if self.config != other.config or self.gates != other.gates:
        raise StatsMismatchError(
            "cannot merge statistics of different gates or settings: "
            f"{self.config} with {[g.name for g in self.gates]} vs "
            f"{other.config} with {[g.name for g in other.gates]}."
        )
    if inputs and (self.inputs is None) != (other.inputs is None):
        raise StatsMismatchError("cannot merge statistics with squeeze inputs and statistics without them.")
    self.flush()
    other.flush()
    if inputs and self.inputs is not None:
        self.inputs.merge(other.inputs)
    rows = self.sampler.merge(other.sampler)
    a, b = self.fused, other.fused
    for g in self.gates:
        if g.name not in self._calibrated:  # nothing added yet: take the other's calibration
            for field in CALIBRATION:
                self._block(field, g.name).copy_(other._block(field, g.name))
            self._calibrated |= {g.name} & other._calibrated
        mine = self._block("reservoir", g.name)
        mine[:-1] = torch.cat([mine[:-1], other._block("reservoir", g.name)[:-1].to(self.device)])[rows]
    _merge_moments(self, other)
    for field in ("count", "perm_count", "sat_high", "sat_low", *COUNTERS):
        a[field] += b[field].to(self.device)
    torch.minimum(a["min"], b["min"].to(self.device), out=a["min"])
    torch.maximum(a["max"], b["max"].to(self.device), out=a["max"])
    values = torch.cat([a["top_values"], b["top_values"].to(self.device)], 1)
    ids = torch.cat([a["top_ids"], b["top_ids"].to(self.device)], 1)
    a["top_values"], a["top_ids"] = top_k(values, ids, self.config.topk)
    self.samples += other.samples

def _merge_moments(self: GateStats, other: GateStats) -> None:
    """Add other's sums (moved to self's shift) and histograms (moved to self's edges)."""
    same = {field: torch.equal(self.fused[field], other.fused[field].to(self.device)) for field in CALIBRATION}
    if all(same.values()):
        for field in ("sum", "sumsq", "perm_sum", "perm_sumsq", "hist"):
            self.fused[field] += other.fused[field].to(self.device)
        return
    k, bins = self.config.num_classes, self.config.bins
    for g in self.gates:
        theirs = {field: other._block(field, g.name).to(self.device) for field in (*self._rows, *CALIBRATION)}
        d = theirs["shift"] - self._block("shift", g.name)
        t = other.gate_tensors(g.name)
        for n, total, sq in (("count", "sum", "sumsq"), ("perm_count", "perm_sum", "perm_sumsq")):
            moved = reshift(t[n].to(self.device), theirs[total], theirs[sq], d)
            self._block(total, g.name).add_(moved[0])
            self._block(sq, g.name).add_(moved[1])
        counts = theirs["hist"].view(k, -1, bins + 2)
        target = self._block("edges", g.name)
        if not torch.equal(theirs["edges"], target):
            counts = rebin(counts, theirs["edges"], target)
        self._block("hist", g.name).add_(counts.flatten())
