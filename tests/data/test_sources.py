"""Data sources: IDX parsing, image folders, synthetic data, and the (x, y, ids) loader."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from analysis.data import sources as data
from analysis.data.sources import DataSource, make_loader, open_data, read_idx
from analysis.errors import DataError

REAL_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def write_idx(path: Path, array: np.ndarray, magic: bytes = b"\x00\x00\x08") -> None:
    """A gzipped IDX file holding `array` as unsigned bytes."""
    header = magic + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


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
    monkeypatch.setattr(data, "FASHION_MNIST_DIR", tmp_path / "absent")
    monkeypatch.setattr(data, "FASHION_MNIST_CACHE", tmp_path / "cache")

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


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Two classes ("cat": 2 PNGs, "dog": 1 JPEG) of small solid-colour images."""
    root = tmp_path / "images"
    for name, colour, files in [("cat", (200, 30, 30), ["a.png", "b.png"]), ("dog", (30, 30, 200), ["c.jpg"])]:
        (root / name).mkdir(parents=True)
        for file in files:
            Image.new("RGB", (40, 30), colour).save(root / name / file)
    return root


def test_image_folder_labels_names_and_shape(image_folder: Path) -> None:
    source = open_data(f"imagefolder:{image_folder}")
    assert source.kind == "imagefolder" and source.class_names == ["cat", "dog"]
    items = [source.dataset[i] for i in range(len(source.dataset))]
    assert [(y, i) for _, y, i in items] == [(0, 0), (0, 1), (1, 2)]
    x = items[0][0]
    assert x.shape == (3, 224, 224)
    assert x[0].mean() > x[2].mean()  # a red cat: normalised red above blue
    assert open_data(f"imagefolder:{image_folder}", image_size=64, channels=1).dataset[2][0].shape == (1, 64, 64)
    assert source.describe()["root"] == str(image_folder.resolve())


def test_image_folder_class_names_file(image_folder: Path) -> None:
    (image_folder / "classes.txt").write_text("house cat\ngood dog\n")
    assert open_data(f"imagefolder:{image_folder}").class_names == ["house cat", "good dog"]
    (image_folder / "class_names.json").write_text(json.dumps(["only one"]))
    with pytest.raises(DataError, match="one name per class folder"):
        open_data(f"imagefolder:{image_folder}")


def test_image_folder_errors(image_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        open_data(f"imagefolder:{tmp_path / 'nowhere'}")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="has no samples"):
        open_data(f"imagefolder:{tmp_path / 'empty'}")
    broken = image_folder / "dog" / "d.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    source = open_data(f"imagefolder:{image_folder}")
    with pytest.raises(DataError, match="d.jpg"):
        source.dataset[3]


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
        ("synthetic:n=0", "has no samples"),
        ("mnist", "unknown data spec"),
        ("imagefolder:", "names no folder"),
    ],
)
def test_bad_specs_are_data_errors(spec: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        open_data(spec)


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


def test_loader_with_workers_keeps_ids(tiny_fmnist: tuple[Path, np.ndarray, np.ndarray]) -> None:
    source = open_data("fashion-mnist")
    x, y, ids = next(iter(make_loader(source, 8, workers=1)))
    assert isinstance(source, DataSource) and x.shape == (5, 1, 28, 28)
    assert ids.tolist() == list(range(5)) and y.tolist() == [3, 0, 9, 1, 3]
