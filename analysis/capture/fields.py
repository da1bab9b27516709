"""The fields of GateStats, declared once: the table below. Their empty state, the merge, the
multi-process reduction, device placement and the file layout all follow from it.

    layout = Layout(config, channels=[16, 32])       # two gates
    fused = layout.empty("cuda")                     # every field kept, all gates side by side
    view = layout.gate_view(fused, "sum", 1)         # gate 1's sum [S*K, 32], as stored in a run

Per gate, with K classes, C channels, S shards, P relabellings, B bins, k top samples and K'R+1
reservoir slots (K' the classes present, R per class; the last slot absorbs the samples not kept):

| field | shape | dtype | merge | group | what |
|---|---|---|---|---|---|
| shift | C | float64 | calibration | (always) | the calibration sample's channel means; moments are of x - shift |
| count | S*K | int64 | add | (always) | samples per shard and class (shards: disjoint, by a hash of the id) |
| sum, sumsq | S*K, C | float64 | shifted | (always) | moments of x - shift per shard and class |
| nonfinite, below, above | C | int64 | add | (always) | NaN/inf values, values < 0 and > 1 (bounded gates) |
| min, max | C | float32 | min, max | (always) | the least and largest value |
| perm_count | P*K | int64 | add | null | samples per pseudo-class under each relabelling (`keys.pseudo_labels`) |
| perm_sum | P*K, C | float32 | shifted | null | sums of x - shift per pseudo-class: the permutation null |
| edges | C, B+1 | float64 | calibration | histogram | bin edges, equiprobable on the calibration sample (`ranges`) |
| hist | K, C, B+2 | int32 | binned | histogram | counts per class over the bins, with under- (0) and overflow (B+1) |
| sat_high, sat_low | K, C | int32 | add | saturation | counts of s >= 0.9 and s <= 0.1 (bounded gates only) |
| reservoir | K'R+1, C | float32 | by sample key | reservoir | whole gate vectors of a uniform sample per class |
| top_values, top_ids | C, k | float32, int64 | top-k | top | per channel the k largest values and their sample ids |

Merge rules: *add* sums; *shifted* adds moments after moving the other's to the receiver's shift
(exact, `ranges.reshift`); *binned* adds counts after moving the other's to the receiver's edges
(by bin centre, `ranges.rebin`; a plain sum when the edges match); *min*/*max*; *by sample key*: the
rows of the slots that the shared `Reservoir` keeps; *top-k*: by value, ties to the smaller id;
*calibration*: the receiver's, or the other's when the receiver has none yet. Every field but the
sampled ones (reservoir, top-k) sums over samples, so processes combine them with one all-reduce.
A group in `StatsConfig.skip` takes neither memory nor work.

In memory each field is one tensor for all gates, the channel axis C replaced by all gates'
channels side by side (G for a per-gate axis: count), so that one kernel adds a batch of every gate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch

from analysis.capture.config import StatsConfig


class Merge(Enum):
    """How two statistics of disjoint samples combine a field (see the module docstring)."""

    ADD = "add"
    SHIFTED = "shifted"
    BINNED = "binned"
    MIN = "min"
    MAX = "max"
    SAMPLED = "by sample key"
    TOP = "top-k"
    CALIBRATION = "calibration"



@dataclass(frozen=True)
class Field:
    """One statistic of every gate: its shape per gate (dimension names of DIMS, "C" the gate's
    channels, "G" one entry per gate), dtype, empty value, merge rule and the group it belongs to."""

    name: str
    shape: tuple[str, ...]
    dtype: torch.dtype
    merge: Merge
    group: str | None = None  # StatsConfig.skip can leave it out; None: always kept
    fill: float = 0
    moves: tuple[str, ...] = ()  # shifted: the count field, then for squares the sum field (ranges.reshift)


DIMS = {
    "S*K": lambda c: c.shards * c.num_classes,
    "P*K": lambda c: c.permutations * c.num_classes,
    "K": lambda c: c.num_classes,
    "K'R+1": lambda c: len(c.present) * c.reservoir + 1,
    "B+1": lambda c: c.bins + 1,
    "B+2": lambda c: c.bins + 2,
    "k": lambda c: c.topk,
}

# The rules that combine two fields entry by entry: one all-reduce each across processes.
ELEMENTWISE = (Merge.ADD, Merge.SHIFTED, Merge.BINNED, Merge.MIN, Merge.MAX)
F64, F32, I64, I32 = torch.float64, torch.float32, torch.int64, torch.int32
FIELDS = (
    Field("shift", ("C",), F64, Merge.CALIBRATION),
    Field("count", ("S*K", "G"), I64, Merge.ADD),
    Field("sum", ("S*K", "C"), F64, Merge.SHIFTED, moves=("count",)),
    Field("sumsq", ("S*K", "C"), F64, Merge.SHIFTED, moves=("count", "sum")),
    Field("nonfinite", ("C",), I64, Merge.ADD),
    Field("below", ("C",), I64, Merge.ADD),
    Field("above", ("C",), I64, Merge.ADD),
    Field("min", ("C",), F32, Merge.MIN, fill=math.inf),
    Field("max", ("C",), F32, Merge.MAX, fill=-math.inf),
    Field("perm_count", ("P*K", "G"), I64, Merge.ADD, "null"),
    Field("perm_sum", ("P*K", "C"), F32, Merge.SHIFTED, "null", moves=("perm_count",)),
    Field("edges", ("C", "B+1"), F64, Merge.CALIBRATION, "histogram"),
    Field("hist", ("K", "C", "B+2"), I32, Merge.BINNED, "histogram"),
    Field("sat_high", ("K", "C"), I32, Merge.ADD, "saturation"),
    Field("sat_low", ("K", "C"), I32, Merge.ADD, "saturation"),
    Field("reservoir", ("K'R+1", "C"), F32, Merge.SAMPLED, "reservoir"),
    Field("top_values", ("C", "k"), F32, Merge.TOP, "top", fill=-math.inf),
    Field("top_ids", ("C", "k"), I64, Merge.TOP, "top", fill=-1),
)


class Layout:
    """The kept fields of statistics of `config` over gates of `channels`, in memory and per gate."""

    def __init__(self, config: StatsConfig, channels: list[int]) -> None:
        self.config, self.channels = config, list(channels)
        self.fields = {f.name: f for f in FIELDS if f.group is None or config.keeps(f.group)}
        starts = [sum(self.channels[:i]) for i in range(len(self.channels))]
        self.columns = [slice(start, start + c) for start, c in zip(starts, self.channels)]
        self.total = sum(self.channels)

    def axis(self, name: str) -> int:
        """The position of a field's channel (or gate) axis."""
        shape = self.fields[name].shape
        return shape.index("C") if "C" in shape else shape.index("G")

    def memory_shape(self, name: str) -> tuple[int, ...]:
        """A field's shape in memory: every gate's channels side by side ("G": one entry per gate)."""
        sizes = {"C": self.total, "G": len(self.channels)}
        return tuple(sizes[d] if d in sizes else DIMS[d](self.config) for d in self.fields[name].shape)

    def gate_shape(self, name: str, gate: int) -> torch.Size:
        """A field's shape for one gate, as stored in a run (the "G" axis dropped)."""
        dims = [d for d in self.fields[name].shape if d != "G"]
        return torch.Size(self.channels[gate] if d == "C" else DIMS[d](self.config) for d in dims)

    def empty(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """Every kept field, empty, on `device`."""
        return {name: torch.full(self.memory_shape(name), f.fill, dtype=f.dtype, device=device)
                for name, f in self.fields.items()}

    def gate_view(self, fused: dict[str, torch.Tensor], name: str, gate: int) -> torch.Tensor:
        """Gate `gate`'s part of a field: a view, in the shape stored in a run."""
        index = self.columns[gate] if "C" in self.fields[name].shape else gate
        return fused[name][(slice(None),) * self.axis(name) + (index,)]

    def columns_view(self, fused: dict[str, torch.Tensor], cols: slice) -> dict[str, torch.Tensor]:
        """The fields restricted to the channels `cols` (views; fields without a channel axis whole)."""
        return {name: t[(slice(None),) * self.axis(name) + (cols,)] if "C" in self.fields[name].shape else t
                for name, t in fused.items()}

    def nbytes(self) -> dict[str, int]:
        """Bytes of each kept field in memory."""
        return {name: math.prod(self.memory_shape(name)) * f.dtype.itemsize for name, f in self.fields.items()}

    def by_merge(self, *rules: Merge) -> list[str]:
        """The kept fields merged by one of `rules`, in table order."""
        return [name for name, f in self.fields.items() if f.merge in rules]
