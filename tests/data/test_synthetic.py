"""Synthetic data: deterministic per index, balanced, class-separable; its spec keys are validated."""

from __future__ import annotations

import pytest
import torch

from analysis.data import open_data
from analysis.errors import DataError


def test_synthetic_is_deterministic_balanced_and_class_separable() -> None:
    source = open_data("synthetic:classes=4,n=200,size=16,channels=2,seed=3")
    assert source.kind == "synthetic" and source.class_names == ["class_0", "class_1", "class_2", "class_3"]
    x, y, i = source.dataset[7]
    assert x.shape == (2, 16, 16) and (y, i) == (3, 7)
    assert torch.equal(x, source.dataset[7][0])
    assert torch.equal(x, open_data("synthetic:classes=4,n=200,size=16,channels=2,seed=3").dataset[7][0])
    assert not torch.equal(x, source.dataset[11][0])  # same class, other noise
    labels = torch.tensor([source.dataset[i][1] for i in range(200)])
    assert torch.bincount(labels).tolist() == [50] * 4
    pooled = torch.stack([source.dataset[i][0].mean((1, 2)) for i in range(200)])  # the SE squeeze: [N, C]
    class_means = torch.stack([pooled[labels == k].mean(0) for k in range(4)])
    within = torch.stack([pooled[labels == k].var(0) for k in range(4)]).mean(0)
    assert (class_means.var(0) > 100 * within).all()


def test_synthetic_signal_zero_is_pure_noise_and_kwargs_fill_unset_keys() -> None:
    x = open_data("synthetic:signal=0,n=4").dataset[0][0]
    assert abs(x.mean().item()) < 0.2 and abs(x.std().item() - 1) < 0.1
    adapted = open_data("synthetic:n=4", image_size=20, channels=1).dataset[0][0]
    assert adapted.shape == (1, 20, 20)
    assert open_data("synthetic:n=4,size=8", image_size=20).dataset[0][0].shape == (3, 8, 8)

@pytest.mark.parametrize(
    "spec, message",
    [
        ("synthetic:colour=3", "valid keys are classes, n, size, channels, seed, signal"),
        ("synthetic:n", "valid keys"),
        ("synthetic:n=1.5", "needs an integer"),
        ("synthetic:signal=loud", "needs a number"),
        ("synthetic:n=3,n=4", "given twice"),
        ("synthetic:classes=0", "at least 1"),
    ],
)
def test_bad_synthetic_specs_are_data_errors(spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        open_data(spec)
