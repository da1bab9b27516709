"""The data source named by one spec string, each yielding (image, label, sample_id).

    source = open_data("fashion-mnist:test")          # or "imagefolder:/data/imagenet/val",
    loader = make_loader(source, 256, limit=5000)      # or "synthetic:classes=10,n=2000"
    for x, y, ids in loader: ...

One module per source (fashion_mnist, image_folder, synthetic); this one only dispatches.
"""

from __future__ import annotations

from analysis.data.fashion_mnist import open_fashion_mnist
from analysis.data.image_folder import open_image_folder
from analysis.data.source import IMAGE_SIZE, DataSource
from analysis.data.synthetic import open_synthetic
from analysis.errors import DataError

SPEC_FORMS = (
    "fashion-mnist[:train|:test], imagefolder:PATH, "
    "or synthetic[:classes=10,n=2000,size=32,channels=3,seed=0,signal=1.0]"
)


def open_data(
    spec: str, *, image_size: int | None = None, channels: int | None = None, split: str | None = None
) -> DataSource:
    """The data source named by `spec`; DataError if it is malformed, missing, unreadable or empty.

    `image_size` and `channels` adapt the images to a model's input; for synthetic data the keys
    written in the spec take precedence over them. `split` selects fashion-mnist's train/test split
    (where the spec names none) or a sub-folder of an image folder.
    """
    kind, _, rest = spec.strip().partition(":")
    IMAGE_SIZE.check("image_size", image_size)
    if kind in ("fashion-mnist", "imagefolder") and channels not in (None, 1, 3):
        raise DataError(f"{kind} images can be read with 1 or 3 channels, not {channels}.")
    if kind == "fashion-mnist":
        source = open_fashion_mnist(spec, rest, split, image_size, channels or 1)
    elif kind == "imagefolder":
        source = open_image_folder(spec, rest, split, image_size or 224, channels or 3)
    elif kind == "synthetic":
        if split is not None:
            raise DataError(f"synthetic data has no splits (asked for {split!r}); use another seed instead.")
        source = open_synthetic(spec, rest, image_size, channels)
    else:
        raise DataError(f"unknown data spec {spec!r}; use {SPEC_FORMS}.")
    if len(source.dataset) == 0:
        raise DataError(f"data source {spec!r} has no samples.")
    return source
