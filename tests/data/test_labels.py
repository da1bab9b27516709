"""The label-range check every consumer of labels shares."""

from __future__ import annotations

import pytest
import torch

from analysis.data.labels import check_labels
from analysis.errors import LabelError


def test_labels_inside_the_classes_pass_and_the_first_bad_one_is_named():
    check_labels(torch.tensor([0, 9, 3]), 10)
    check_labels(torch.tensor([], dtype=torch.int64), 10)
    with pytest.raises(LabelError, match=r"label 10 is outside the 10 classes 0\.\.9"):
        check_labels(torch.tensor([0, 10, 3]), 10)
    with pytest.raises(LabelError, match="label -1 is outside"):
        check_labels(torch.tensor([-1, 12]), 10)
