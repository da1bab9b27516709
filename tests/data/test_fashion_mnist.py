"""Fashion-MNIST: IDX parsing and validation, normalisation, adapting to a model, finding the files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis.data import fashion_mnist, make_loader, open_data
from analysis.data.fashion_mnist import read_idx
from analysis.errors import DataError
from analysis.testing.data import write_idx

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture
def tiny_fmnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, np.ndarray, np.ndarray]:
    """Five random 28x28 test images with labels, in a folder named by FASHION_MNIST_DIR."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 0, 9, 1, 3], dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    return tmp_path, images, labels


def test_idx_files_parse_to_normalised_images(tiny_fmnist: tuple[Path, np.ndarray, np.ndarray]) -> None:
    folder, images, labels = tiny_fmnist
    source = open_data("fashion-mnist")
    assert source.kind == "fashion-mnist" and len(source.dataset) == 5 and source.num_classes == 10
    assert source.class_names[0] == "T-shirt/top" and source.class_names[9] == "Ankle boot"
    for i in range(5):
        x, y, sample_id = source.dataset[i]
        assert x.shape == (1, 28, 28) and x.dtype == torch.float32
        assert (y, sample_id) == (labels[i], i)
        expected = (images[i].astype(np.float64) / 255 - 0.2860) / 0.3530
        np.testing.assert_allclose(x[0].numpy(), expected, atol=1e-5)
    described = source.describe()
    assert json.loads(json.dumps(described)) == described
    assert described["split"] == "test" and described["size"] == 5 and described["root"] == str(folder.resolve())


def test_fashion_mnist_channels_and_size_adapt_to_a_model(tiny_fmnist: tuple[Path, np.ndarray, np.ndarray]) -> None:
    x, _, _ = open_data("fashion-mnist:test", image_size=32, channels=3).dataset[2]
    assert x.shape == (3, 32, 32)
    assert torch.equal(x[0], x[2])
    plain = open_data("fashion-mnist").dataset[2][0]
    assert abs(x.mean().item() - plain.mean().item()) < 0.05  # resizing keeps the image's brightness


@pytest.mark.parametrize(
    "spec, split, message",
    [("fashion-mnist:val", None, "unknown Fashion-MNIST split"), ("fashion-mnist:test", "train", "names split")],
)
def test_bad_fashion_mnist_split_is_a_data_error(
    tiny_fmnist: tuple[Path, np.ndarray, np.ndarray], spec: str, split: str | None, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        open_data(spec, split=split)


def test_missing_truncated_and_corrupt_idx_files_are_data_errors(
    tiny_fmnist: tuple[Path, np.ndarray, np.ndarray],
) -> None:
    folder, images, _ = tiny_fmnist
    with pytest.raises(DataError, match="does not exist"):
        open_data("fashion-mnist:train")  # FASHION_MNIST_DIR holds only the test split
    image_file = folder / "t10k-images-idx3-ubyte.gz"
    whole = gzip.decompress(image_file.read_bytes())
    image_file.write_bytes(gzip.compress(whole[:-10]))
    with pytest.raises(DataError, match="promises"):
        read_idx(image_file)
    image_file.write_bytes(gzip.compress(whole)[:-20])
    with pytest.raises(DataError, match="not a readable gzip file"):
        read_idx(image_file)
    write_idx(image_file, images, magic=b"\x00\x00\x0d")  # float32 type code
    with pytest.raises(DataError, match="magic"):
        open_data("fashion-mnist")


def test_label_count_and_range_are_checked(tiny_fmnist: tuple[Path, np.ndarray, np.ndarray]) -> None:
    folder, _, labels = tiny_fmnist
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", labels[:4])
    with pytest.raises(DataError, match="4 labels"):
        open_data("fashion-mnist")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.array([0, 1, 2, 3, 10]))
    with pytest.raises(DataError, match="label 10"):
        open_data("fashion-mnist")


def test_absent_fashion_mnist_without_download_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", tmp_path / "absent")
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_CACHE", tmp_path / "cache")

    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no network")

    monkeypatch.setattr("torchvision.datasets.FashionMNIST", offline)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        open_data("fashion-mnist")


@pytest.mark.skipif(not REAL_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_test_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    source = open_data("fashion-mnist")
    assert len(source.dataset) == 10000
    assert np.bincount(source.dataset.labels, minlength=10).tolist() == [1000] * 10
    assert source.dataset[0][0].shape == (1, 28, 28)


def test_loader_with_workers_keeps_ids(tiny_fmnist: tuple[Path, np.ndarray, np.ndarray]) -> None:
    source = open_data("fashion-mnist")
    x, y, ids = next(iter(make_loader(source, 8, workers=1)))
    assert x.shape == (5, 1, 28, 28)
    assert ids.tolist() == list(range(5)) and y.tolist() == [3, 0, 9, 1, 3]
