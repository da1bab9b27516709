"""Per-channel calibration of GateStats: the shift of the moments and the range of the histogram.

    shift, low, high = first_batch(s64)             # from the first batch of a gate, [N, C] -> [C] each
    lo, hi = histogram_range(low, high, bounded)    # edges lo + (hi - lo) * b / B, b = 0..B
    cell = bin_cells(s64, edges(lo, hi, bins))      # 0 = underflow, 1..B, B + 1 = overflow

Trained SE gates vary by 1e-4..1e-2 around a per-channel offset, so fixed bins on [0, 1] see one
spike and sum - sumsq^2 / n cancels most digits. Both are fixed per channel from the first batch:
moments are kept of x - shift, and the histogram's B bins span the first batch's min..max widened
by MARGIN of that span on each side, values outside going to an underflow and an overflow bin.
Calibrations from different batches still merge: `reshift` moves moments to another shift exactly
(Chan et al.'s algebra), `rebin` moves histogram counts to other edges by bin centre (approximate;
exact, a plain sum, when the edges match, as under torchrun where the ranks agree on them first).
"""

from __future__ import annotations

import torch

MARGIN = 0.25  # share of the first batch's span added below and above it to the histogram range
# The least span of a range, relative to the magnitude of its values: a few float32 steps, so that a
# channel constant in the first batch still gets bins that separate later values.
MIN_SPAN = 2.0**-20
BOUNDED_TOP = 1.0 + 2.0**-20  # highest upper edge of a gate in [0, 1]: keeps 1.0 inside the last bin


def first_batch(s64: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(shift = mean, low = min, high = max) per channel of the finite values of s64 [N, C] float64;
    (0, 0, 0) for a channel without one (its NaNs are reported by GateStats.check)."""
    finite = torch.isfinite(s64)
    n = finite.sum(0)
    shift = torch.where(finite, s64, 0.0).sum(0) / n.clamp(min=1)
    low = torch.where(finite, s64, torch.inf).amin(0)
    high = torch.where(finite, s64, -torch.inf).amax(0)
    some = n > 0
    return shift, torch.where(some, low, 0.0), torch.where(some, high, 0.0)


def histogram_range(low: torch.Tensor, high: torch.Tensor, bounded: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) [C] float64 of the histogram from a batch's min and max [C]: widened by MARGIN, at
    least MIN_SPAN wide, and within [0, BOUNDED_TOP] for gates in [0, 1]."""
    size = torch.maximum(low.abs(), high.abs())
    span = torch.maximum(high - low, MIN_SPAN * size + 2.0**-60)
    lo, hi = low - MARGIN * span, high + MARGIN * span
    if bounded:
        lo, hi = lo.clamp(min=0.0), hi.clamp(max=BOUNDED_TOP)
    return lo, hi


def edges(lo: torch.Tensor, hi: torch.Tensor, bins: int) -> torch.Tensor:
    """[C, B + 1] float64 bin edges of the ranges lo, hi [C]."""
    steps = torch.arange(bins + 1, dtype=torch.float64, device=lo.device) / bins
    return lo[:, None] + (hi - lo)[:, None] * steps


def bin_cells(s64: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Histogram cell of each value of s64 [N, C] over edges [C, B + 1] -> [N, C] int64: the number
    of edges at or below it, so 0 below edges[:, 0], B + 1 at or above edges[:, -1]."""
    return torch.searchsorted(edges, s64.t().contiguous(), right=True).t()


def reshift(count: torch.Tensor, total: torch.Tensor, total_sq: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Moments of x - a from those of x - b, d = b - a [C]: count [R], total, total_sq [R, C] ->
    (sum [R, C], sumsq [R, C]); (x - a) = (x - b) + d, so the sums gain n d and 2 d sum + n d^2."""
    n = count.to(torch.float64)[:, None]
    return total + n * d, total_sq + 2 * d * total + n * d * d


def rebin(counts: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Histogram counts [K, C, B + 2] over edges `source` [C, B + 1] moved to edges `target`: each
    bin to the target cell of its centre, the underflow and overflow to those of their edge."""
    below = torch.nextafter(source[:, :1], torch.tensor(-torch.inf, dtype=source.dtype))
    points = torch.cat([below, (source[:, 1:] + source[:, :-1]) / 2, source[:, -1:]], dim=1)  # [C, B + 2]
    cell = torch.searchsorted(target.contiguous(), points.contiguous(), right=True)  # edges <= point: 0 .. B + 1
    out = torch.zeros_like(counts)
    return out.scatter_add_(2, cell.to(counts.device).expand_as(counts), counts)
