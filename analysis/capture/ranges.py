"""Per-channel calibration of GateStats: the shift of the moments and the edges of the histogram.

    shift, quantiles = shift_and_quantiles(s64, bins)   # of the calibration sample, [N, C] -> [C], [C, B + 1]
    e = histogram_edges(quantiles, bounded)             # [C, B + 1]: outer edges widened, interior ones kept
    cell = bin_cells(s64, e)                            # 0 = underflow, 1..B, B + 1 = overflow

Trained SE gates vary by 1e-4..1e-2 around a per-channel offset, so fixed bins on [0, 1] see one
spike and sum - sumsq^2 / n cancels most digits; and many channels are skewed, so equal-width bins
over a channel's range leave its bulk in one or two bins (on the shipped SE-ResNet-20, SE_4_2's
channel 3 had 1066 of 2000 samples in one bin and lost a third of its mutual information). Both are
fixed per channel from a calibration sample (GateStats: the samples of smallest id among the first
`StatsConfig.calibration`): moments are kept of x - shift, and the histogram's B bins are
equiprobable on the sample: interior edges at its quantiles b/B (b = 1..B-1, order statistics), the
outer edges at its min and max widened by MARGIN of that span on each side, values outside going to
an underflow and an overflow bin. Where the sample repeats a value (gates saturated at exactly
1.0), quantile edges repeat: the bins between them have zero width and stay empty (a value equal to
an edge counts in the bin above it), which the mutual information does not notice and the plots
skip. A channel constant in the sample gets B equal-width bins over its widened range instead.

Calibrations from different samples still merge: `reshift` moves moments to another shift exactly
(Chan et al.'s algebra), `rebin` moves histogram counts to other edges by bin centre (approximate;
exact, a plain sum, when the edges match, as under torchrun where the processes share one sample).
"""

from __future__ import annotations

import torch

MARGIN = 0.25  # share of the calibration sample's span added below and above it to the histogram range
# The least span of a range, relative to the magnitude of its values: a few float32 steps, so that a
# channel constant in the calibration sample still gets bins that separate later values.
MIN_SPAN = 2.0**-20
BOUNDED_TOP = 1.0 + 2.0**-20  # highest upper edge of a gate in [0, 1]: keeps 1.0 inside the last bin


def shift_and_quantiles(s64: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(shift [C] = mean, quantiles [C, B + 1]) of the finite values of s64 [N, C] float64 per
    channel: quantile b is the order statistic floor(n b / B) of the channel's n finite values
    (b = 0: the min, b = B: the max), so each of the B bins between them holds n / B of them (+-1,
    fewer where values tie). (0, 0) for a channel without a finite value (its NaNs are reported by
    GateStats.check)."""
    finite = torch.isfinite(s64)
    n = finite.sum(0)
    shift = torch.where(finite, s64, 0.0).sum(0) / n.clamp(min=1)
    ordered = torch.where(finite, s64, torch.inf).sort(0).values  # the finite values first
    b = torch.arange(bins + 1, device=s64.device)[:, None]
    rank = torch.minimum(n * b // bins, (n - 1).clamp(min=0))  # [B + 1, C]
    return shift, torch.where(n > 0, ordered.gather(0, rank), 0.0).t().contiguous()


def histogram_edges(quantiles: torch.Tensor, bounded: bool) -> torch.Tensor:
    """[C, B + 1] float64 bin edges from a sample's quantiles [C, B + 1] (shift_and_quantiles): the min and
    max widened by MARGIN of their span, at least MIN_SPAN apart, within [0, BOUNDED_TOP] for
    gates in [0, 1]; between them the interior quantiles (B equal-width bins where the span was
    below MIN_SPAN), clamped into the outer edges so that the edges never decrease."""
    low, high = quantiles[:, 0], quantiles[:, -1]
    size = torch.maximum(low.abs(), high.abs())
    span = torch.maximum(high - low, MIN_SPAN * size + 2.0**-60)
    lo, hi = low - MARGIN * span, high + MARGIN * span
    if bounded:
        lo, hi = lo.clamp(0.0, BOUNDED_TOP), hi.clamp(0.0, BOUNDED_TOP)
    lo, hi = lo[:, None], hi[:, None]
    steps = torch.linspace(0.0, 1.0, quantiles.shape[1], dtype=torch.float64, device=quantiles.device)
    inner = torch.where((span > high - low)[:, None], lo + (hi - lo) * steps, quantiles)[:, 1:-1]
    return torch.cat([lo, inner.clamp(lo, hi), hi], dim=1)


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
