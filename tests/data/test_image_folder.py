"""Image folders: labels and names from the folders, the class-name files, unreadable images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from analysis.data import open_data
from analysis.errors import DataError


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

    with pytest.raises(DataError, match="names no folder"):
        open_data("imagefolder:")
