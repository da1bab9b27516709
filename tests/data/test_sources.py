"""The dispatcher and the loader: spec errors common to every source, and (x, y, ids) batches."""

from __future__ import annotations

import pytest
import torch

from analysis.data import DataSource, make_loader, open_data
from analysis.errors import DataError


@pytest.mark.parametrize(
    "spec, kwargs, message",
    [
        ("mnist", {}, "unknown data spec"),
        ("synthetic:n=0", {}, "has no samples"),
        ("synthetic", {"image_size": 0}, "image size must be a positive integer"),
        ("imagefolder:/nowhere", {"channels": 2}, "1 or 3 channels, not 2"),
        ("synthetic", {"split": "train"}, "no splits"),
    ],
)
def test_bad_specs_are_data_errors(spec: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        open_data(spec, **kwargs)


def test_loader_yields_ids_and_honours_limit() -> None:
    source = open_data("synthetic:classes=3,n=50,size=8")
    batches = list(make_loader(source, 16))
    x, y, ids = (torch.cat(parts) for parts in zip(*batches))
    assert x.shape == (50, 3, 8, 8) and y.dtype == ids.dtype == torch.int64
    assert ids.tolist() == list(range(50)) and torch.equal(y, ids % 3)
    limited = torch.cat([b[2] for b in make_loader(source, 16, limit=20, shuffle=True, seed=1)])
    assert sorted(limited.tolist()) == list(range(20))
    with pytest.raises(DataError, match="no samples"):
        make_loader(source, 16, limit=0)


def test_synthetic_spec_opens_a_data_source() -> None:
    source = open_data("synthetic:classes=3,n=6,size=8")
    assert isinstance(source, DataSource) and source.num_classes == 3 and source.describe()["size"] == 6
