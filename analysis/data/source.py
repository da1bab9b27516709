"""What every data source returns (a DataSource) and how its samples are batched (make_loader).

The sample id is the sample's index in the full data set, so statistics gathered by different
shards, processes or resumed runs can be merged by id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from analysis.errors import DataError
from analysis.options import Range

IMAGE_SIZE = Range(8, 4096)  # pixels per side: smaller breaks the networks' strides, larger cannot be allocated


@dataclass(frozen=True)
class DataSource:
    """A parsed data spec: the dataset, its class names, and what to record about it in meta.json."""

    spec: str
    dataset: Dataset
    class_names: list[str]
    kind: str  # "fashion-mnist" | "imagefolder" | "synthetic"
    details: dict[str, Any] = field(default_factory=dict)  # kind-specific, JSON-able

    @property
    def num_classes(self) -> int:
        """The number of classes, which fixes the shape of the gate statistics."""
        return len(self.class_names)

    def describe(self) -> dict[str, Any]:
        """A JSON-able record of this source, so a run says exactly what it was computed on."""
        return {
            "spec": self.spec, "kind": self.kind, "size": len(self.dataset),
            "num_classes": self.num_classes, "class_names": list(self.class_names), **self.details,
        }


def make_loader(
    source: DataSource, batch_size: int, *, workers: int = 0, limit: int | None = None,
    shuffle: bool = False, seed: int = 0, collate_fn: Callable | None = None,
    indices: Sequence[int] | None = None,
) -> DataLoader:
    """Batches (x [N,C,H,W] float32, y [N] int64, ids [N] int64) over the first `limit` samples.

    Ids stay the indices into the full data set, so a limited or shuffled pass merges with others.
    `collate_fn` replaces the default stacking, for datasets whose items differ in shape.
    `indices` keeps only those of the samples (one process's shard in a distributed run).
    """
    if batch_size < 1:
        raise DataError(f"batch size must be a positive integer, got {batch_size}.")
    dataset = source.dataset
    if limit is not None:
        if limit < 1:
            raise DataError(f"data source {source.spec!r} with limit={limit} has no samples.")
        if limit < len(dataset):
            dataset = Subset(dataset, range(limit))
    if indices is not None:
        dataset = Subset(dataset, indices)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
    )
