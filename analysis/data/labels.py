"""The one check that a batch's labels name classes of the data, used wherever labels arrive, and the
one rule of which classes are present (those with samples).

    check_labels(y, num_classes)            # LabelError for a label outside 0..num_classes-1
    check_labels(y, num_classes, (1, 254))  # ... or, for a class subset, not among its labels
    present_labels([3, 0, 5])               # (0, 2): the classes with samples, from counts per class
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from analysis.errors import LabelError


def check_labels(labels: torch.Tensor, num_classes: int, classes: Sequence[int] | None = None) -> None:
    """LabelError for a label outside 0..num_classes-1, or not among `classes` where given (the
    labels that statistics of a class subset were set up for). labels: [N] integers.

    Checked only where the labels are on the CPU (as from a DataLoader): on a GPU the check would
    stall it until the host reads the result, so labels already there are trusted."""
    if labels.device.type == "cpu" and labels.numel():
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= num_classes:
            raise LabelError(f"label {lo if lo < 0 else hi} is outside the {num_classes} classes 0..{num_classes - 1}.")
        if classes is not None:
            other = labels[~torch.isin(labels, torch.as_tensor(classes, dtype=labels.dtype))]
            if other.numel():
                raise LabelError(f"label {int(other[0])} is not one of the {len(classes)} classes the statistics hold.")


def present_labels(counts: Sequence[int] | np.ndarray) -> tuple[int, ...]:
    """The labels with at least one sample, in increasing order, from the sample count of each label [K]:
    every class unless the data holds some of them only (a class subset, an ImageNet folder of a few
    classes) or a limit left some out."""
    return tuple(np.flatnonzero(np.asarray(counts) > 0).tolist())
