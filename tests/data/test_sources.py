"""The dispatcher and the loader: spec errors common to every source, and (x, y, ids) batches."""

from __future__ import annotations

import pytest
import torch

from analysis.data import DataSource, make_loader, open_data
from analysis.data.source import dataset_labels, limited_indices
from analysis.errors import DataError, OptionError


@pytest.mark.parametrize(
    "spec, kwargs, message",
    [
        ("mnist", {}, "unknown data spec"),
        ("synthetic:n=0", {}, "has no samples"),
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
    assert sorted(limited.tolist()) == limited_indices(source.dataset, 20)
    with pytest.raises(DataError, match="no samples"):
        make_loader(source, 16, limit=0)


def test_synthetic_spec_opens_a_data_source() -> None:
    source = open_data("synthetic:classes=3,n=6,size=8")
    assert isinstance(source, DataSource) and source.num_classes == 3 and source.describe()["size"] == 6


@pytest.mark.parametrize("size", [0, 7, 4097, 100000])
def test_image_sizes_outside_8_to_4096_are_option_errors(size: int) -> None:
    with pytest.raises(OptionError, match=f"--image-size must be between 8 and 4096, not {size}"):
        open_data("synthetic", image_size=size)
    with pytest.raises(OptionError, match=f"synthetic setting size in .* must be between 8 and 4096, not {size}"):
        open_data(f"synthetic:size={size}")


def test_limit_takes_a_seeded_stratified_subset_of_class_sorted_data() -> None:
    class Sorted(torch.utils.data.Dataset):  # 3 classes of 40, 30 and 5 samples, sorted by class
        labels = [0] * 40 + [1] * 30 + [2] * 5

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
            return torch.zeros(1, 8, 8), self.labels[i], i

    source = DataSource("sorted", Sorted(), ["a", "b", "c"], "synthetic")
    ids = torch.cat([b[2] for b in make_loader(source, 16, limit=21)]).tolist()
    counts = torch.bincount(torch.tensor(Sorted.labels)[ids], minlength=3).tolist()
    assert counts == [8, 8, 5]  # turns until class c runs out, then a and b share the rest
    assert len(set(ids)) == 21 and ids == sorted(ids)
    assert ids == torch.cat([b[2] for b in make_loader(source, 16, limit=21)]).tolist()  # seeded: the same again
    assert ids[:8] != list(range(8))  # not the first samples of each class
    assert dataset_labels(open_data("fashion-mnist:test").dataset)[:3].tolist() == [9, 2, 1]
