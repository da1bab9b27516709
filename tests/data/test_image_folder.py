"""Image folders: labels and names from the folders, the class-name files or ImageNet's wnids, unreadable images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from analysis.data import make_loader, open_data
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


def test_imagenet_wnid_folders_get_the_models_indices_and_names(tmp_path: Path) -> None:
    # goldfish is output 1 of ImageNet-1k models and pug output 254 (the class order of the 1000 synsets)
    root = tmp_path / "val"
    for wnid, files in [("n02110958", ["a.png"]), ("n01443537", ["b.png", "c.png"])]:
        (root / wnid).mkdir(parents=True)
        for file in files:
            Image.new("RGB", (12, 10), (200, 30, 30)).save(root / wnid / file)
    source = open_data(f"imagefolder:{root}", image_size=8)
    assert [source.dataset[i][1:] for i in range(3)] == [(1, 0), (1, 1), (254, 2)]
    assert source.num_classes == 1000 and source.class_names[1] == "goldfish" and source.class_names[254] == "pug"
    assert source.details["wnids"][1] == "n01443537" and source.details["wnids"][254] == "n02110958"
    assert len(set(source.class_names)) == 1000  # shared lemmas carry their wnid
    assert source.class_names[134] == "crane (n02012849)" and source.class_names[517] == "crane (n03126707)"
    batch = next(iter(make_loader(source, 4)))
    assert batch[1].tolist() == [1, 1, 254]  # the loader reads the same labels (from the folder's samples)


@pytest.mark.parametrize("other", ["cat", "n99999999"])  # not a wnid, and a wnid outside ImageNet-1k
def test_folders_not_all_imagenet_wnids_keep_folder_order_labels(tmp_path: Path, other: str) -> None:
    root = tmp_path / "mixed"
    for name in (other, "n01443537"):
        (root / name).mkdir(parents=True)
        Image.new("RGB", (12, 10), (30, 30, 200)).save(root / name / "x.png")
    source = open_data(f"imagefolder:{root}", image_size=8)
    assert source.class_names == sorted([other, "n01443537"]) and "wnids" not in source.details
    assert sorted(source.dataset[i][1] for i in range(2)) == [0, 1]
