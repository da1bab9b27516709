"""StatsConfig: what GateStats keeps (its fields and their layout are the table of `capture.fields`).

    config = StatsConfig(num_classes=10)                        # everything, 99 relabellings
    cheap = StatsConfig(num_classes=10, skip=("reservoir", "top"))  # a control pass without samples
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import torch

from analysis.errors import LabelError, OptionError
from analysis.options import Range, check_fields

SAT_HIGH = 0.9  # a gate value >= this is near 1: counted in `sat_high`
SAT_LOW = 0.1  # a gate value <= this is near 0: counted in `sat_low`
# Groups of fields that a StatsConfig can leave out (`skip`); the others are always kept.
OPTIONAL = ("null", "histogram", "saturation", "reservoir", "top")
# What the tables read of the squeezed inputs z (measures/tables.py: eta2_z and probe_z): the moments
# summed over shards and the reservoir; the rest of a full GateStats is left out (issue 24).
SQUEEZE_SKIP = ("null", "histogram", "saturation", "top")
# (ids [n] int64, values [n, C] float32) of this process's calibration candidates -> those of every
# process, concatenated (distributed.gather_ranks under torchrun), so that all calibrate alike.
Gather = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class StatsConfig:
    """What GateStats keeps. Stored in the run's meta.json; two stats merge only if configs match."""

    num_classes: int
    # histogram bins per channel, equiprobable on the calibration sample (plus underflow and overflow: 20 cells);
    # one bin says nothing
    bins: Annotated[int, Range(2)] = 18
    # gate vectors kept per class; 0 picks min(256, max(16, 4096 // K')), K' the classes present
    reservoir: Annotated[int, Range(0)] = 0
    topk: Annotated[int, Range(1)] = 16  # samples kept per channel for image galleries
    shards: Annotated[int, Range(1)] = 8  # disjoint data shards for jackknife intervals
    seed: Annotated[int, Range(0)] = 0  # seeds the sample keys of the reservoir, the shard assignment and the relabellings
    # fixed pseudo-label relabellings kept as class sums (the permutation null): its p-value's floor is 1 / (1 + P)
    permutations: Annotated[int, Range(0)] = 99
    # samples that set each channel's shift and histogram edges: the smallest ids among the first this many
    # samples of every process (see GateStats), so that one process and several calibrate alike
    calibration: Annotated[int, Range(2)] = 512
    bounded: bool = True  # values are gates in [0, 1]: range checks and saturation counts (False for z)
    # The labels the data holds when not all of 0..K-1 (a class subset); None: all. See `present`.
    classes: tuple[int, ...] | None = None
    skip: tuple[str, ...] = ()  # groups of fields left out (OPTIONAL): their memory and their work

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
        unknown = [group for group in self.skip if group not in OPTIONAL]
        if unknown:
            raise OptionError(f"{', '.join(unknown)} cannot be skipped; optional statistics: {', '.join(OPTIONAL)}.")
        object.__setattr__(self, "skip", tuple(group for group in OPTIONAL if group in self.skip))

    @property
    def present(self) -> tuple[int, ...]:
        """The labels the statistics are over (`classes`, else all of 0..K-1): the relabellings of the
        permutation null draw among these, and the reservoir keeps slots for these only."""
        return self.classes if self.classes is not None else tuple(range(self.num_classes))

    def keeps(self, group: str) -> bool:
        """Whether the fields of `group` are kept: not skipped, and saturation only for gates in [0, 1]."""
        return group not in self.skip and (group != "saturation" or self.bounded)

    def squeezed(self) -> StatsConfig:
        """The configuration of the squeezed inputs z beside these gates: unbounded, one shard, and only
        what the tables read of them (SQUEEZE_SKIP left out)."""
        return dataclasses.replace(self, bounded=False, shards=1, skip=tuple({*self.skip, *SQUEEZE_SKIP}))
