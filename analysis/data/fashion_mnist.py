"""Fashion-MNIST from its gzipped IDX files: the Debian package, $FASHION_MNIST_DIR, or a download."""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from analysis.data.source import DataSource, image_channels, register_source
from analysis.errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FASHION_MNIST_CACHE = Path.home() / ".cache" / "se-analysis" / "fashion-mnist"
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530


def read_idx(path: Path) -> np.ndarray:
    """The uint8 array in a gzipped IDX file (big-endian header: magic 0x0000 0x08 ndim, then dims)."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist.") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"IDX file {path} is not a readable gzip file ({e}).") from None
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08" or raw[3] == 0:
        raise DataError(f"IDX file {path} has a bad magic number (expected unsigned bytes, 0x000008nn).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header.")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + math.prod(dims)
    if len(raw) != expected:
        raise DataError(f"IDX file {path} holds {len(raw)} bytes, its header {dims} promises {expected}.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


class IdxDataset(Dataset):
    """Fashion-MNIST kept as uint8 in memory; each item is normalised (and resized) when read."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, image_size: int | None, channels: int) -> None:
        self.images, self.labels = images, labels
        self.image_size, self.channels = image_size, channels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        x = torch.tensor(self.images[index], dtype=torch.float32).div_(255).unsqueeze(0)
        if self.image_size is not None and self.image_size != x.shape[-1]:
            size = (self.image_size, self.image_size)
            x = F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
        x = x.sub_(FASHION_MNIST_MEAN).div_(FASHION_MNIST_STD)
        return x.expand(self.channels, -1, -1).contiguous(), int(self.labels[index]), index


def _fashion_mnist_dir(split: str) -> Path:
    """The folder holding `split`'s IDX files: $FASHION_MNIST_DIR, the Debian package, or a download."""
    if os.environ.get("FASHION_MNIST_DIR"):
        return Path(os.environ["FASHION_MNIST_DIR"])  # the user named it: never download elsewhere
    cache = FASHION_MNIST_CACHE / "FashionMNIST" / "raw"  # where torchvision puts its download
    for folder in (FASHION_MNIST_DIR, cache):
        if any((folder / name).exists() for name in FASHION_MNIST_FILES[split]):
            return folder
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(FASHION_MNIST_CACHE), train=split == "train", download=True)
    except (OSError, RuntimeError) as e:
        raise DataError(
            f"Fashion-MNIST is not in {FASHION_MNIST_DIR} and could not be downloaded ({e}); "
            "run `apt-get install dataset-fashion-mnist` or set FASHION_MNIST_DIR to a folder with its IDX files."
        ) from None
    return cache


@register_source("fashion-mnist", "fashion-mnist[:train|:test]")
def open_fashion_mnist(
    spec: str, named: str, *, split: str | None, image_size: int | None, channels: int | None
) -> DataSource:
    """Fashion-MNIST's train or test split (test by default) from its gzipped IDX files, validated."""
    channels, asked = image_channels("fashion-mnist", channels, 1), split
    if named and asked and named != asked:
        raise DataError(f"data spec {spec!r} names split {named!r}, but split {asked!r} was asked for.")
    split = named or asked or "test"
    if split not in FASHION_MNIST_FILES:
        raise DataError(
            f"unknown Fashion-MNIST split {split!r}; use fashion-mnist, fashion-mnist:train or fashion-mnist:test."
        )
    folder = _fashion_mnist_dir(split)
    image_file, label_file = (folder / name for name in FASHION_MNIST_FILES[split])
    images, labels = read_idx(image_file), read_idx(label_file)
    if images.ndim != 3 or labels.ndim != 1:
        raise DataError(
            f"Fashion-MNIST files in {folder} have shapes {images.shape} and {labels.shape}, not [N, H, W] and [N]."
        )
    if len(images) != len(labels):
        raise DataError(f"{image_file} holds {len(images)} images but {label_file} holds {len(labels)} labels.")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DataError(f"{label_file} holds label {labels.max()}, outside 0..{len(FASHION_MNIST_CLASSES) - 1}.")
    details = {
        "root": str(folder.resolve()), "split": split, "image_size": image_size or images.shape[-1],
        "channels": channels, "mean": FASHION_MNIST_MEAN, "std": FASHION_MNIST_STD,
    }
    dataset = IdxDataset(images, labels, image_size, channels)
    return DataSource(spec, dataset, list(FASHION_MNIST_CLASSES), "fashion-mnist", details)
