"""Data sources: what each returns (a DataSource), the registry of the kinds a spec names, and batches.

    source = open_data("fashion-mnist:test")          # or "imagefolder:/data/imagenet/val",
    loader = make_loader(source, 256, limit=5000)      # or "synthetic:classes=10,n=2000"
    for x, y, ids in loader: ...

A kind of source is one registration (`register_source`) in its own module (fashion_mnist,
image_folder, synthetic; `analysis.data` imports them); `open_data`, the CLI's help and its errors read
the registry. The sample id is the sample's index in the full data set, so statistics gathered by
different shards, processes or resumed runs can be merged by id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from analysis.data.labels import present_labels
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


class Opener(Protocol):
    def __call__(self, spec: str, rest: str, *, split: str | None, image_size: int | None,
                 channels: int | None) -> DataSource: ...


@dataclass(frozen=True)
class SourceKind:
    """A kind of data source: the specs `prefix[:rest]` and how they are opened."""

    prefix: str
    form: str  # how a spec of this kind is written, for help texts and errors: "imagefolder:PATH"
    open: Opener  # (spec, rest, split=, image_size=, channels=) -> DataSource; DataError for bad input


SOURCES: dict[str, SourceKind] = {}  # prefix -> kind, in registration order


def register_source(prefix: str, form: str) -> Callable[[Opener], Opener]:
    """Decorator registering `open(spec, rest, *, split, image_size, channels)` as the opener of the
    specs `prefix[:rest]` (`form` shows how they are written). `split` is a split or sub-folder asked
    for (None: the spec's own or the default); `image_size` and `channels` adapt the images to a model
    (None: the source's own)."""
    def register(open_: Opener) -> Opener:
        SOURCES[prefix] = SourceKind(prefix, form, open_)
        return open_
    return register


def spec_forms() -> str:
    """The registered kinds of data spec, as the CLI's help and the errors list them."""
    forms = [kind.form for kind in SOURCES.values()]
    return ", ".join(forms[:-1]) + f" or {forms[-1]}" if len(forms) > 1 else "".join(forms)


def open_data(
    spec: str, *, image_size: int | None = None, channels: int | None = None, split: str | None = None
) -> DataSource:
    """The data source named by `spec`; DataError if it is malformed, missing, unreadable or empty.

    `image_size` and `channels` adapt the images to a model's input; for synthetic data the keys
    written in the spec take precedence over them. `split` selects fashion-mnist's train/test split
    (where the spec names none) or a sub-folder of an image folder.
    """
    prefix, _, rest = spec.strip().partition(":")
    IMAGE_SIZE.check("image_size", image_size)
    if prefix not in SOURCES:
        raise DataError(f"unknown data spec {spec!r}; use {spec_forms()}.")
    source = SOURCES[prefix].open(spec, rest, split=split, image_size=image_size, channels=channels)
    if len(source.dataset) == 0:
        raise DataError(f"data source {spec!r} has no samples.")
    return source


def image_channels(kind: str, channels: int | None, default: int) -> int:
    """The channels to read a source's images with: `default`, or 1 (grey) or 3 (RGB) as asked."""
    if channels not in (None, 1, 3):
        raise DataError(f"{kind} images can be read with 1 or 3 channels, not {channels}.")
    return channels or default


def dataset_labels(dataset: Dataset) -> np.ndarray:
    """[N] the label of every sample, from the dataset's label list where it keeps one (Fashion-MNIST's
    `labels`, an image folder's `samples` or `targets`; a Subset's from its dataset's), else by reading
    every item."""
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    for holder in (dataset, getattr(dataset, "folder", None)):
        for name in ("labels", "targets"):
            if hasattr(holder, name):
                return np.asarray(getattr(holder, name))
        if hasattr(holder, "samples"):
            return np.asarray([label for _, label in holder.samples])
    return np.asarray([dataset[i][1] for i in range(len(dataset))])


def present_classes(source: DataSource) -> tuple[int, ...]:
    """The labels that the source's samples carry, in increasing order (a class subset has fewer than
    num_classes)."""
    return present_labels(np.bincount(dataset_labels(source.dataset), minlength=source.num_classes))


LIMIT_SEED = 0  # the subset of `--limit N` is the same in every run and every process


def limited_indices(dataset: Dataset, limit: int) -> list[int]:
    """`limit` sample indices, in increasing order, drawn class by class in turn (each class's samples
    in a random order seeded by LIMIT_SEED) until the limit is reached: as balanced as the classes'
    sizes allow, every class represented once `limit` reaches the number of classes."""
    labels = dataset_labels(dataset)
    rng = np.random.default_rng(LIMIT_SEED)
    queues = [rng.permutation(np.flatnonzero(labels == k)) for k in np.unique(labels)]
    # Round r takes the r-th sample of every class that has one; order by (round, class).
    rounds = np.concatenate([np.arange(len(q)) for q in queues])
    order = np.argsort(rounds, kind="stable")
    return sorted(np.concatenate(queues)[order][:limit].tolist())


def make_loader(
    source: DataSource, batch_size: int, *, workers: int = 0, limit: int | None = None,
    shuffle: bool = False, seed: int = 0, collate_fn: Callable | None = None,
    indices: Sequence[int] | None = None,
) -> DataLoader:
    """Batches (x [N,C,H,W] float32, y [N] int64, ids [N] int64) over the first `limit` samples.

    `limit` keeps a seeded stratified subset (`limited_indices`), so that every class is
    represented even in a data set sorted by class; ids stay the indices into the full data set, so
    a limited or shuffled pass merges with others.
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
            dataset = Subset(dataset, limited_indices(dataset, limit))
    if indices is not None:
        dataset = Subset(dataset, indices)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
    )
