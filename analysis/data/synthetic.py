"""Synthetic data with planted class patterns, generated per index from a seed (no files)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from analysis.data.source import IMAGE_SIZE, DataSource, register_source
from analysis.errors import DataError

SYNTHETIC_DEFAULTS: dict[str, int | float] = {
    "classes": 10, "n": 2000, "size": 32, "channels": 3, "seed": 0, "signal": 1.0,
}
SYNTHETIC_WAVES = 3  # sinusoids per class and channel


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

    @property
    def labels(self) -> np.ndarray:
        """[n] every sample's label (classes take turns), without generating an image."""
        return np.arange(self.n) % self.classes

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


@register_source("synthetic", f"synthetic[:{','.join(f'{k}={v}' for k, v in SYNTHETIC_DEFAULTS.items())}]")
def open_synthetic(
    spec: str, body: str, *, split: str | None, image_size: int | None, channels: int | None
) -> DataSource:
    """Synthetic data; the spec's keys win over `image_size`/`channels`, which win over the defaults."""
    if split is not None:
        raise DataError(f"synthetic data has no splits (asked for {split!r}); use another seed instead.")
    given = _parse_synthetic(spec, body)
    adapted = {k: v for k, v in (("size", image_size), ("channels", channels)) if v is not None}
    params = {**SYNTHETIC_DEFAULTS, **adapted, **given}
    for key in ("classes", "channels"):
        if params[key] < 1:
            raise DataError(f"synthetic setting {key} must be at least 1, got {params[key]}.")
    IMAGE_SIZE.check("size", params["size"], label=f"synthetic setting size in {spec!r}")
    if params["n"] < 0 or params["seed"] < 0:
        raise DataError(f"synthetic settings n and seed must not be negative in {spec!r}.")
    if not math.isfinite(params["signal"]):
        raise DataError(f"synthetic setting signal must be a finite number in {spec!r}.")
    dataset = SyntheticDataset(**params)
    names = [f"class_{k}" for k in range(params["classes"])]
    return DataSource(spec, dataset, names, "synthetic", {"params": params})
