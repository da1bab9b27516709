"""What GateStats keeps, and the dtype and kind of each of its fields (one place for the file layout).

    config = StatsConfig(num_classes=10, permutations=8)
    shapes = field_shapes(config, channels=64)     # one gate's tensors as stored in a run

Per gate, with K classes, C channels, S shards, P relabellings and B bins (the layout of a run's
stats file; in memory each field is one tensor holding the gates' tensors one after another, so
that a batch is added to all gates at once, and each gate's tensor is a contiguous view):

* `shift [C]` float64, the first batch's channel means; `count [S*K]` int64, `sum`/`sumsq
  [S*K, C]` float64: moments of s - shift per shard and class, so narrow gates keep their digits.
  Shards are disjoint parts of the data chosen by a hash of the sample id; the totals are their
  sums, and the shards give jackknife intervals without storing anything per sample.
* `perm_count [P*K]`, `perm_sum`/`perm_sumsq [P*K, C]`: the same moments under P fixed
  relabellings (`keys.pseudo_labels`, among the classes present), the permutation null, exact
  under merge.
* `edge_lo`/`edge_hi [C]` float64 and `hist [K*C*(B+2)]` int32: per class and channel, counts
  over B bins spanning the channel's own range (from the first batch, see `ranges`), with an
  underflow (cell 0) and an overflow (cell B+1).
* `sat_high`/`sat_low [K*C]` int32: exact counts of s >= 0.9 and s <= 0.1 (bounded gates only).
* `reservoir [K'*R+1, C]` float32: a uniform sample of R gate vectors per class of the K' classes
  present (`StatsConfig.present`; K' = K unless the data is a class subset), in the slots of one
  `Reservoir` shared by all gates (stored once as `_reservoir/keys` and `_reservoir/ids`; row
  K'*R is a scratch row that absorbs the samples not kept). Each sample's key is a hash of its id.
* `top_values`/`top_ids [C, k]`: per channel, the k samples with the largest gate.
* `nonfinite`, `below`, `above`, `min`, `max`: problems seen, checked once by `check()`, because a
  host sync inside a hook would stall the GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import torch

from analysis.errors import LabelError
from analysis.options import Range, check_fields

SAT_HIGH = 0.9  # a gate value >= this is near 1: counted in `sat_high`
SAT_LOW = 0.1  # a gate value <= this is near 0: counted in `sat_low`
DTYPES = {"count": torch.int64, "perm_count": torch.int64, "sum": torch.float64, "sumsq": torch.float64,
          "perm_sum": torch.float64, "perm_sumsq": torch.float64, "hist": torch.int32, "sat_high": torch.int32,
          "sat_low": torch.int32, "reservoir": torch.float32, "top_values": torch.float32, "top_ids": torch.int64,
          "nonfinite": torch.int64, "below": torch.int64, "above": torch.int64, "min": torch.float32,
          "max": torch.float32, "shift": torch.float64, "edge_lo": torch.float64, "edge_hi": torch.float64}
PER_CHANNEL = ("top_values", "top_ids", "shift", "edge_lo", "edge_hi")  # [C, ...] per gate
COUNTERS = ("nonfinite", "below", "above")  # one number per gate, kept per channel and summed on reading
CALIBRATION = ("shift", "edge_lo", "edge_hi")
# (shift, low, high) [C] of a first batch, made equal across processes in place (see distributed.agree_ranks)
Agree = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class StatsConfig:
    """What GateStats keeps. Stored in the run's meta.json; two stats merge only if configs match."""

    num_classes: int
    # histogram bins over each channel's own range (plus underflow and overflow: 20 cells); one bin says nothing
    bins: Annotated[int, Range(2)] = 18
    # gate vectors kept per class; 0 picks min(256, max(16, 4096 // K')), K' the classes present
    reservoir: Annotated[int, Range(0)] = 0
    topk: Annotated[int, Range(1)] = 16  # samples kept per channel for image galleries
    shards: Annotated[int, Range(1)] = 8  # disjoint data shards for jackknife intervals
    seed: Annotated[int, Range(0)] = 0  # seeds the sample keys of the reservoir, the shard assignment and the relabellings
    permutations: Annotated[int, Range(0)] = 8  # fixed pseudo-label relabellings kept as extra moment tables (the null)
    bounded: bool = True  # values are gates in [0, 1]: range checks and saturation counts (False for z)
    # The labels the data holds when not all of 0..K-1 (a class subset); None: all. See `present`.
    classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise LabelError(f"num_classes must be at least 1, not {self.num_classes}.")
        check_fields(self)
        if self.classes is not None:
            classes = tuple(sorted({int(k) for k in self.classes}))
            if not classes or classes[0] < 0 or classes[-1] >= self.num_classes:
                raise LabelError(f"classes must be labels in 0..{self.num_classes - 1}, not {list(self.classes)[:5]}.")
            object.__setattr__(self, "classes", None if len(classes) == self.num_classes else classes)
        if self.reservoir == 0:
            object.__setattr__(self, "reservoir", min(256, max(16, 4096 // len(self.present))))

    @property
    def present(self) -> tuple[int, ...]:
        """The labels the statistics are over (`classes`, else all of 0..K-1): the relabellings of the
        permutation null draw among these, and the reservoir keeps slots for these only."""
        return self.classes if self.classes is not None else tuple(range(self.num_classes))


def field_shapes(config: StatsConfig, channels: int) -> dict[str, torch.Size]:
    """The shape of each field of one gate of `channels` channels, as GateStats.gate_tensors gives it."""
    c, k, kept = channels, config.num_classes, len(config.present) * config.reservoir + 1
    sk, pk = config.shards * k, config.permutations * k
    shapes = {"count": (sk,), "perm_count": (pk,), "sum": (sk, c), "sumsq": (sk, c), "perm_sum": (pk, c),
              "perm_sumsq": (pk, c), "hist": (k * c * (config.bins + 2),), "sat_high": (k, c), "sat_low": (k, c),
              "reservoir": (kept, c), "top_values": (c, config.topk), "top_ids": (c, config.topk),
              "nonfinite": (), "below": (), "above": (), "min": (), "max": (), "shift": (c,), "edge_lo": (c,),
              "edge_hi": (c,)}
    return {field: torch.Size(shape) for field, shape in shapes.items()}
