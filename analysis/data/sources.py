"""Data sources named by one spec string, each yielding (image, label, sample_id).

    source = open_data("fashion-mnist:test")          # or "imagefolder:/data/imagenet/val",
    loader = make_loader(source, 256, limit=5000)      # or "synthetic:classes=10,n=2000"
    for x, y, ids in loader: ...

The sample id is the sample's index in the full data set, so statistics gathered by different
shards, processes or resumed runs can be merged by id.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import zlib
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset

from analysis.errors import DataError

SPEC_FORMS = (
    "fashion-mnist[:train|:test], imagefolder:PATH, "
    "or synthetic[:classes=10,n=2000,size=32,channels=3,seed=0,signal=1.0]"
)

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
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GRAY_MEAN, GRAY_STD = 0.449, 0.226  # ImageNet's statistics averaged over RGB, for 1-channel models
CENTER_CROP_FRACTION = 0.875  # evaluation transform: shorter side to size / 0.875, then a size x size center crop
SYNTHETIC_DEFAULTS: dict[str, int | float] = {
    "classes": 10, "n": 2000, "size": 32, "channels": 3, "seed": 0, "signal": 1.0,
}
SYNTHETIC_WAVES = 3  # sinusoids per class and channel


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


def open_data(
    spec: str, *, image_size: int | None = None, channels: int | None = None, split: str | None = None
) -> DataSource:
    """The data source named by `spec`; DataError if it is malformed, missing, unreadable or empty.

    `image_size` and `channels` adapt the images to a model's input; for synthetic data the keys
    written in the spec take precedence over them. `split` selects fashion-mnist's train/test split
    (where the spec names none) or a sub-folder of an image folder.
    """
    kind, _, rest = spec.strip().partition(":")
    if image_size is not None and image_size < 1:
        raise DataError(f"image size must be a positive integer, got {image_size}.")
    if kind in ("fashion-mnist", "imagefolder") and channels not in (None, 1, 3):
        raise DataError(f"{kind} images can be read with 1 or 3 channels, not {channels}.")
    if kind == "fashion-mnist":
        source = _open_fashion_mnist(spec, rest, split, image_size, channels or 1)
    elif kind == "imagefolder":
        source = _open_image_folder(spec, rest, split, image_size or 224, channels or 3)
    elif kind == "synthetic":
        if split is not None:
            raise DataError(f"synthetic data has no splits (asked for {split!r}); use another seed instead.")
        source = _open_synthetic(spec, rest, image_size, channels)
    else:
        raise DataError(f"unknown data spec {spec!r}; use {SPEC_FORMS}.")
    if len(source.dataset) == 0:
        raise DataError(f"data source {spec!r} has no samples.")
    return source


def make_loader(
    source: DataSource, batch_size: int, *, workers: int = 0, limit: int | None = None,
    shuffle: bool = False, seed: int = 0, collate_fn: Callable | None = None,
    indices: Sequence[int] | None = None,
) -> DataLoader:
    """Batches (x [N,C,H,W] float32, y [N] int64, ids [N] int64) over the first `limit` samples.

    Ids stay the indices into the full data set, so a limited or shuffled pass merges with others.
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
            dataset = Subset(dataset, range(limit))
    if indices is not None:
        dataset = Subset(dataset, indices)
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
        pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
    )


# --- Fashion-MNIST -------------------------------------------------------------------------------


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


def _open_fashion_mnist(spec: str, named: str, asked: str | None, image_size: int | None, channels: int) -> DataSource:
    """Fashion-MNIST's train or test split (test by default) from its gzipped IDX files, validated."""
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


# --- image folders -------------------------------------------------------------------------------


def load_image(path: str, mode: str) -> Image.Image:
    """The image at `path` in `mode`; DataError naming the file if PIL cannot decode it."""
    try:
        with Image.open(path) as img:
            return img.convert(mode)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot read image {path} ({e}).") from None


class FolderDataset(Dataset):
    """torchvision's ImageFolder with the sample index appended to each item."""

    def __init__(self, folder: Dataset) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        x, y = self.folder[index]
        return x, y, index


def _folder_class_names(root: Path, folders: list[str]) -> list[str]:
    """Readable class names from class_names.json or classes.txt at `root`, else the folder names."""
    json_file, text_file = root / "class_names.json", root / "classes.txt"
    try:
        if json_file.exists():
            names = json.loads(json_file.read_text())
        elif text_file.exists():
            names = [line.strip() for line in text_file.read_text().splitlines() if line.strip()]
        else:
            return folders
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read the class names in {root} ({e}).") from None
    if not isinstance(names, list) or len(names) != len(folders):
        raise DataError(f"the class-name file in {root} must list one name per class folder ({len(folders)}).")
    return [str(name) for name in names]


def _open_image_folder(spec: str, path: str, split: str | None, image_size: int, channels: int) -> DataSource:
    """An ImageNet-style folder (one sub-folder per class) with the standard evaluation transform."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    if not path:
        raise DataError(f"data spec {spec!r} names no folder; use imagefolder:PATH.")
    root = Path(path).expanduser()
    if split is not None:
        root = root / split
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder.")
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((GRAY_MEAN,), (GRAY_STD,))
    transform = transforms.Compose([
        transforms.Resize(round(image_size / CENTER_CROP_FRACTION)),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
    loader = partial(load_image, mode="RGB" if channels == 3 else "L")
    try:
        folder = ImageFolder(str(root), transform=transform, loader=loader)
    except FileNotFoundError:
        raise DataError(f"image folder {root} has no samples (expected a sub-folder of images per class).") from None
    details = {
        "root": str(root.resolve()), "image_size": image_size, "channels": channels,
        "mean": list(mean), "std": list(std),
    }
    names = _folder_class_names(root, folder.classes)
    return DataSource(spec, FolderDataset(folder), names, "imagefolder", details)


# --- synthetic -----------------------------------------------------------------------------------


class SyntheticDataset(Dataset):
    """Balanced classes of smooth class patterns plus unit Gaussian noise, generated per index.

    Each class pattern is a per-channel mean offset (distinct between classes on every channel, so
    global average pooling alone separates the classes) plus a few low-frequency sinusoids. Only
    the pattern parameters are stored; an item depends on (seed, index) alone.
    """

    def __init__(self, classes: int, n: int, size: int, channels: int, seed: int, signal: float) -> None:
        self.classes, self.n, self.seed, self.signal = classes, n, seed, signal
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
        levels = np.linspace(-1.0, 1.0, classes) if classes > 1 else np.zeros(1)
        offsets = np.stack([rng.permutation(levels) for _ in range(channels)], 1)  # [classes, channels]
        self.offsets = torch.tensor(offsets, dtype=torch.float32)
        shape = (classes, channels, SYNTHETIC_WAVES)
        # Whole cycles along x average to zero over the image: the offset alone sets the channel mean.
        self.fx = torch.tensor(rng.integers(1, 4, shape), dtype=torch.float32)[..., None, None]
        self.fy = torch.tensor(rng.integers(-3, 4, shape), dtype=torch.float32)[..., None, None]
        self.phase = torch.tensor(rng.uniform(0, 2 * np.pi, shape), dtype=torch.float32)[..., None, None]
        coords = torch.arange(size, dtype=torch.float32) * (2 * math.pi / size)
        self.ys, self.xs = torch.meshgrid(coords, coords, indexing="ij")

    def __len__(self) -> int:
        return self.n

    def pattern(self, label: int) -> torch.Tensor:
        """The noise-free image [C, H, W] of class `label` (before scaling by the signal)."""
        waves = torch.sin(self.fx[label] * self.xs + self.fy[label] * self.ys + self.phase[label])
        return waves.sum(1) / math.sqrt(SYNTHETIC_WAVES) + self.offsets[label][:, None, None]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        if not 0 <= index < self.n:
            raise IndexError(f"sample {index} is outside 0..{self.n - 1}.")
        label = index % self.classes
        state = np.random.SeedSequence(self.seed, spawn_key=(1, index)).generate_state(1, np.uint64)[0]
        x = self.pattern(label).mul_(self.signal)
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(int(state)))
        return x.add_(noise), label, index


def _parse_synthetic(spec: str, body: str) -> dict[str, int | float]:
    """The synthetic parameters written in `body` ("k=v,..."), typed; DataError names the valid keys."""
    params: dict[str, int | float] = {}
    for item in filter(None, (part.strip() for part in body.split(","))):
        key, eq, value = (s.strip() for s in item.partition("="))
        if key not in SYNTHETIC_DEFAULTS or not eq:
            valid = ", ".join(SYNTHETIC_DEFAULTS)
            raise DataError(f"bad synthetic setting {item!r} in {spec!r}; valid keys are {valid} (as key=value).")
        if key in params:
            raise DataError(f"synthetic setting {key!r} is given twice in {spec!r}.")
        try:
            params[key] = float(value) if key == "signal" else int(value)
        except ValueError:
            kind = "a number" if key == "signal" else "an integer"
            raise DataError(f"synthetic setting {key} in {spec!r} needs {kind}, got {value!r}.") from None
    return params


def _open_synthetic(spec: str, body: str, image_size: int | None, channels: int | None) -> DataSource:
    """Synthetic data; the spec's keys win over `image_size`/`channels`, which win over the defaults."""
    given = _parse_synthetic(spec, body)
    adapted = {k: v for k, v in (("size", image_size), ("channels", channels)) if v is not None}
    params = {**SYNTHETIC_DEFAULTS, **adapted, **given}
    for key in ("classes", "size", "channels"):
        if params[key] < 1:
            raise DataError(f"synthetic setting {key} must be at least 1, got {params[key]}.")
    if params["n"] < 0 or params["seed"] < 0:
        raise DataError(f"synthetic settings n and seed must not be negative in {spec!r}.")
    if not math.isfinite(params["signal"]):
        raise DataError(f"synthetic setting signal must be a finite number in {spec!r}.")
    dataset = SyntheticDataset(**params)
    names = [f"class_{k}" for k in range(params["classes"])]
    return DataSource(spec, dataset, names, "synthetic", {"params": params})
