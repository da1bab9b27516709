"""ImageNet-style image folders (one sub-folder per class) read with PIL and the evaluation transform.

Class folders that are all ImageNet-1k WordNet ids (n01443537, ...) are labelled with the models'
output indices and named from timm's table (`imagenet`): a folder of some of the 1000 classes is a
source of 1000 classes, only some of them with samples, and its details keep the 1000 wnids
("wnids", by label). Other folders are labelled 0..K-1 in folder order and named by
class_names.json or classes.txt (one name per folder), else by the folder names.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from analysis.data.imagenet import imagenet_classes, imagenet_labels
from analysis.data.source import DataSource, image_channels, register_source
from analysis.errors import DataError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GRAY_MEAN, GRAY_STD = 0.449, 0.226  # ImageNet's statistics averaged over RGB, for 1-channel models
CENTER_CROP_FRACTION = 0.875  # evaluation transform: shorter side to size / 0.875, then a size x size center crop


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


@register_source("imagefolder", "imagefolder:PATH")
def open_image_folder(
    spec: str, path: str, *, split: str | None, image_size: int | None, channels: int | None
) -> DataSource:
    """An ImageNet-style folder (one sub-folder per class, or per class in `split`) with the standard
    evaluation transform, at `image_size` (default 224) with `channels` (default 3)."""
    image_size, channels = image_size or 224, image_channels("imagefolder", channels, 3)
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
    labels = imagenet_labels(folder.classes)
    if labels is None:
        names = _folder_class_names(root, folder.classes)
    else:
        folder.samples = folder.imgs = [(file, labels[folder.classes[y]]) for file, y in folder.samples]
        folder.targets, folder.class_to_idx = [y for _, y in folder.samples], labels
        wnids, imagenet_names = imagenet_classes()
        names, details["wnids"] = list(imagenet_names), list(wnids)
    return DataSource(spec, FolderDataset(folder), names, "imagefolder", details)
