"""JPEG decoding on the GPU for image folders: workers read bytes, nvjpeg decodes whole batches.

PIL decoding in 16 DataLoader workers reached about 3.4k images/s on an H100 machine with no
model at all, well below what the GPU runs SE-ResNet-50 at (DESIGN.md, "Performance"). Here the
workers only read each file's bytes; the main process decodes a batch with one `decode_jpeg` call
on the GPU and resizes, crops and normalises it there, as image_folder.py's PIL transform does, up to
interpolation rounding.

    loader = make_image_loader(source, 256, torch.device("cuda"), decode="auto", workers=4)
    for x, y, ids in loader: ...        # x is already on the GPU and preprocessed
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import Dataset, Subset
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as TF

from analysis.data.image_folder import CENTER_CROP_FRACTION, load_image
from analysis.data.source import DataSource, make_loader
from analysis.errors import DataError

DECODE_CHOICES = ("auto", "cpu", "gpu")
JPEG_MAGIC = b"\xff\xd8\xff"
PIL_LUMA = (19595, 38470, 7471)  # Pillow's RGB -> L weights, in 1/65536


def resolve_decode(decode: str, source: DataSource, device: torch.device) -> str:
    """"cpu" or "gpu" for the decode option; auto decodes on the GPU for an image folder on CUDA."""
    if decode not in DECODE_CHOICES:
        raise DataError(f"decode must be one of {', '.join(DECODE_CHOICES)}, not {decode!r}.")
    possible = source.kind == "imagefolder" and device.type == "cuda"
    if decode == "gpu" and not possible:
        raise DataError(
            f"decoding on the GPU needs an imagefolder: source on a CUDA device, not {source.kind} on {device}."
        )
    return "gpu" if possible and decode != "cpu" else "cpu"


def make_image_loader(
    source: DataSource, batch_size: int, device: torch.device, *, decode: str = "auto", workers: int = 0,
    limit: int | None = None, indices: Sequence[int] | None = None,
) -> Iterable:
    """make_loader's batches, decoded as `decode` says: by PIL in the workers or by nvjpeg on `device`."""
    if resolve_decode(decode, source, device) == "gpu":
        return JpegLoader(source, batch_size, device, workers=workers, limit=limit, indices=indices)
    return make_loader(source, batch_size, workers=workers, limit=limit, indices=indices)


class EncodedImages(Dataset):
    """An image folder's items as (file bytes uint8 [L], label, index).

    A file that does not start like a JPEG is decoded here by the PIL path's loader instead and
    arrives as uint8 [3, H, W], so such files cost worker time, not main-process time.
    """

    def __init__(self, samples: list[tuple[str, int]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        path, label = self.samples[index]
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as e:
            raise DataError(f"cannot read image {path} ({e}).") from None
        if data[:3].tobytes() == JPEG_MAGIC:
            return torch.from_numpy(data), label, index
        return TF.pil_to_tensor(load_image(path, "RGB")), label, index


def collate_encoded(
    items: list[tuple[torch.Tensor, int, int]],
) -> tuple[torch.Tensor, list[int], list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """(the batch's JPEG bytes end to end, each item's byte count or -1 if decoded, the decoded
    images, labels, ids): one shared-memory tensor per batch rather than one per file."""
    payloads, labels, ids = zip(*items)
    encoded = [p for p in payloads if p.dim() == 1]
    blob = torch.cat(encoded) if encoded else torch.empty(0, dtype=torch.uint8)
    lengths = [len(p) if p.dim() == 1 else -1 for p in payloads]
    decoded = [p for p in payloads if p.dim() == 3]
    return blob, lengths, decoded, torch.tensor(labels), torch.tensor(ids)


def decode_jpegs(data: list[torch.Tensor], paths: list[str], device: torch.device) -> list[torch.Tensor]:
    """The JPEGs `data` (read from `paths`) as uint8 [3, H, W] on `device`.

    nvjpeg fails a whole batch for one file it cannot read, so then each file is tried alone, and
    one that fails alone goes through PIL, which reads it (a JPEG variant nvjpeg lacks) or raises
    the PIL path's DataError naming the file.
    """
    if not data:
        return []
    try:
        return _decode_jpeg(data, device)
    except RuntimeError:
        return [_decode_alone(d, p, device) for d, p in zip(data, paths)]


def _decode_alone(data: torch.Tensor, path: str, device: torch.device) -> torch.Tensor:
    try:
        return _decode_jpeg(data, device)
    except RuntimeError:
        return TF.pil_to_tensor(load_image(path, "RGB")).to(device)


def _decode_jpeg(data: torch.Tensor | list[torch.Tensor], device: torch.device) -> torch.Tensor | list[torch.Tensor]:
    # torchvision 0.29 deprecates its decoders for TorchCodec; they still work, and the warning
    # would come once per batch.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


def preprocess(images: list[torch.Tensor], image_size: int, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """image_folder.py's evaluation transform on uint8 [3, H, W] images, batched: [N, C, size, size] float32.

    Like the PIL path, it converts to grey (C = 1) by Pillow's weights and resizes in uint8 with
    antialiasing. Images of one shape are resized in one call (a folder's images share few shapes),
    and no step waits for the GPU, so the next batch is prepared while the model runs.
    """
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        groups[tuple(image.shape)].append(i)
    crops: dict[int, torch.Tensor] = {}
    for index in groups.values():
        batch = torch.stack([images[i] for i in index])
        if len(mean) == 1:
            r, g, b = batch.int().unbind(1)
            batch = ((r * PIL_LUMA[0] + g * PIL_LUMA[1] + b * PIL_LUMA[2] + 0x8000) >> 16).to(torch.uint8)[:, None]
        batch = TF.resize(batch, [round(image_size / CENTER_CROP_FRACTION)], antialias=True)
        for i, crop in zip(index, TF.center_crop(batch, [image_size, image_size])):
            crops[i] = crop
    return torch.stack([crops[i] for i in range(len(images))]).float().div_(255).sub_(mean).div_(std)


class JpegLoader:
    """Batches (x [N, C, S, S] float32 on `device`, y, ids) of an imagefolder: source, decoded by
    nvjpeg (or libjpeg for a CPU device), equal to make_loader's up to interpolation rounding."""

    def __init__(
        self, source: DataSource, batch_size: int, device: torch.device, *, workers: int = 0, limit: int | None = None,
        indices: Sequence[int] | None = None,
    ) -> None:
        if source.kind != "imagefolder":
            raise DataError(f"JPEG decoding reads imagefolder: sources, not {source.kind}.")
        selected = isinstance(source.dataset, Subset)  # a class selection (analysis.data.selection)
        self.samples: list[tuple[str, int]] = (source.dataset.dataset if selected else source.dataset).folder.samples
        encoded = EncodedImages(self.samples)
        encoded = Subset(encoded, source.dataset.indices) if selected else encoded
        self.device = torch.device(device)
        self.image_size = source.details["image_size"]
        self.mean = torch.tensor(source.details["mean"], device=self.device).view(-1, 1, 1)
        self.std = torch.tensor(source.details["std"], device=self.device).view(-1, 1, 1)
        self.loader = make_loader(
            replace(source, dataset=encoded), batch_size, workers=workers, limit=limit,
            collate_fn=collate_encoded, indices=indices,
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for blob, lengths, decoded, y, ids in self.loader:
            paths = [self.samples[i][0] for i, n in zip(ids.tolist(), lengths) if n >= 0]
            jpegs = iter(decode_jpegs(list(blob.split([n for n in lengths if n >= 0])), paths, self.device))
            others = iter(decoded)
            images = [next(jpegs) if n >= 0 else next(others).to(self.device) for n in lengths]
            yield preprocess(images, self.image_size, self.mean, self.std), y, ids
