"""The merge rules of `capture.fields` on field tensors (GateStats.merge and distributed.merge_ranks use them).

    theirs = moved_to(layout, theirs, mine)      # the other's sums moved to my shift, histograms to my edges
    combine(mine["sum"], theirs["sum"], Merge.SHIFTED)
    combine_sampled(mine, theirs, rows, topk)    # reservoir rows by the sampler's slots, top-k by value

Moments kept under different shifts are moved exactly (`ranges.reshift`); histograms over
different edges are moved by bin centre (`ranges.rebin`), and add exactly when the calibrations
match (as under torchrun, where the processes calibrate on one sample).
"""

from __future__ import annotations

import torch

from analysis.capture.fields import Layout, Merge
from analysis.capture.keys import top_k
from analysis.capture.ranges import rebin, reshift


def moved_to(layout: Layout, theirs: dict[str, torch.Tensor], mine: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`theirs` with its shifted and binned fields moved to the calibration of `mine` (copies only
    where the calibrations differ)."""
    calibration = layout.by_merge(Merge.CALIBRATION)
    if all(torch.equal(theirs[name], mine[name]) for name in calibration):
        return theirs
    moved = dict(theirs)
    for name in layout.by_merge(Merge.SHIFTED, Merge.BINNED):
        moved[name] = theirs[name].clone()
    for gate in range(len(layout.channels)):
        def view(fields: dict[str, torch.Tensor], name: str, gate: int = gate) -> torch.Tensor:
            return layout.gate_view(fields, name, gate)

        d = view(theirs, "shift") - view(mine, "shift")
        for name in layout.by_merge(Merge.SHIFTED):
            count, *lower = layout.fields[name].moves
            n = view(theirs, count)
            total = view(theirs, lower[0]) if lower else torch.zeros_like(d)
            # x - mine = (x - theirs) + d: sums gain n d; squares 2 d sum + n d^2 (reshift)
            shifted = reshift(n, total, view(theirs, name), d)[1] if lower else view(theirs, name) + n[:, None] * d
            view(moved, name).copy_(shifted)
        for name in layout.by_merge(Merge.BINNED):
            edges = view(theirs, "edges")
            if not torch.equal(edges, view(mine, "edges")):
                view(moved, name).copy_(rebin(view(theirs, name), edges, view(mine, "edges")))
    return moved


def combine(mine: torch.Tensor, theirs: torch.Tensor, rule: Merge) -> None:
    """Combine a field of disjoint samples into `mine`, in place, by an elementwise rule."""
    if rule is Merge.MIN:
        torch.minimum(mine, theirs, out=mine)
    elif rule is Merge.MAX:
        torch.maximum(mine, theirs, out=mine)
    else:
        mine += theirs


def combine_sampled(mine: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], rows: torch.Tensor | None, topk: int) -> None:
    """Fold another's sampled fields into `mine`, in place: reservoir rows by `rows` (Reservoir.merge:
    per slot, its row among mine then theirs, the scratch row left), top-k by value, ties to the smaller id."""
    if rows is not None and "reservoir" in mine:
        mine["reservoir"][:-1] = torch.cat([mine["reservoir"][:-1], theirs["reservoir"][:-1]])[rows]
    if "top_values" in mine:
        values = torch.cat([mine["top_values"], theirs["top_values"]], 1)
        ids = torch.cat([mine["top_ids"], theirs["top_ids"]], 1)
        for name, kept in zip(("top_values", "top_ids"), top_k(values, ids, topk)):
            mine[name].copy_(kept)
