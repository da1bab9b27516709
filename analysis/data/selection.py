"""Which samples of a data source a job uses: some of its classes, and a seeded number per class.

    source = select(source, classes=("goldfish", "n02110958", "7"), per_class=50, seed=0)

`--classes` names classes by class name, WordNet id (an image folder of ImageNet classes) or label
index, in that order of precedence; `--per-class N` draws N samples of each class, seeded by
(seed, class), so a class gets the same samples whichever other classes are chosen, and takes all
of a class that has fewer (`selection_warnings` says so). The selected classes keep their label
indices, so a model's outputs still match; the source's class names and num_classes do not change.
Sample ids stay indices into the whole data set, and `--limit` then draws its stratified subset
from the selected samples (make_loader). The selection is recorded in the source's details.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from torch.utils.data import Subset

from analysis.data.source import DataSource, dataset_labels
from analysis.errors import DataError, listed
from analysis.options import Range

EXAMPLES = 3  # valid class names shown beside an unknown one
PER_CLASS = Range(1)  # samples per class: at least one


def _examples(source: DataSource, present: np.ndarray) -> str:
    shown = ", ".join(repr(source.class_names[k]) for k in present[:EXAMPLES])
    return f"e.g. {shown} or an index 0..{source.num_classes - 1}"


def class_indices(source: DataSource, names: Sequence[str], present: np.ndarray) -> list[int]:
    """The label index of each of `names` (a class name, a wnid or an index), in increasing order;
    DataError naming those that are no class of the source or have no samples in it."""
    if not names:
        raise DataError(f"--classes names no class of {source.spec}; {_examples(source, present)}.")
    lookup = {str(w): k for k, w in enumerate(source.details.get("wnids", ()))}
    lookup |= {name: k for k, name in enumerate(source.class_names)}
    found, unknown = set(), []
    for name in (n.strip() for n in names):
        if name in lookup:
            found.add(lookup[name])
        elif name.isdigit() and int(name) < source.num_classes:
            found.add(int(name))
        else:
            unknown.append(name)
    if unknown:
        raise DataError(f"{source.spec} has no class {listed(map(repr, unknown))}; {_examples(source, present)}.")
    empty = sorted(found - set(present.tolist()))
    if empty:
        missing = listed(repr(source.class_names[k]) for k in empty)
        raise DataError(f"{source.spec} holds no samples of class {missing}; {_examples(source, present)}.")
    return sorted(found)


def _draw(labels: np.ndarray, classes: list[int], per_class: int | None, seed: int) -> tuple[np.ndarray, dict[int, int]]:
    """(sample indices in increasing order, {class: samples} of the classes with fewer than per_class)."""
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], classes)
    ends = np.searchsorted(labels[order], classes, side="right")
    picked, short = [], {}
    for k, lo, hi in zip(classes, starts, ends):
        members = order[lo:hi]
        if per_class is not None and members.size > per_class:
            members = np.random.default_rng([seed, k]).choice(members, per_class, replace=False)
        elif per_class is not None and members.size < per_class:
            short[k] = int(members.size)
        picked.append(members)
    return np.sort(np.concatenate(picked)), short


def select(
    source: DataSource, *, classes: Sequence[str] | None = None, per_class: int | None = None, seed: int = 0
) -> DataSource:
    """The source restricted to `classes` (all when None) and to `per_class` samples of each (all
    when None), drawn with `seed`; the source itself when neither is given. DataError for a class
    that is unknown or has no samples, OptionError for a per_class below 1."""
    if classes is None and per_class is None:
        return source
    PER_CLASS.check("per_class", per_class)
    labels = dataset_labels(source.dataset)
    present = np.unique(labels)
    chosen = present.tolist() if classes is None else class_indices(source, classes, present)
    indices, short = _draw(labels, chosen, per_class, seed)
    record = {"classes": None if classes is None else chosen, "per_class": per_class, "seed": seed,
              "short": {source.class_names[k]: n for k, n in short.items()}}
    return replace(source, dataset=Subset(source.dataset, indices.tolist()),
                   details={**source.details, "selection": record})


def selection_warnings(source: DataSource) -> list[str]:
    """What the selection could not do: the classes with fewer samples than --per-class asked for."""
    record = source.details.get("selection") or {}
    short = record.get("short") or {}
    if not short:
        return []
    classes = listed(f"{name} {n}" for name, n in short.items())
    return [f"--per-class {record['per_class']}: {len(short)} classes have fewer samples, all of them taken ({classes})."]
