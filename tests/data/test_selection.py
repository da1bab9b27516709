"""Class selection (--classes) and seeded samples per class (--per-class) on every data source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from analysis import load_run
from analysis.cli import main
from analysis.data import make_loader, open_data
from analysis.data.selection import select, selection_warnings
from analysis.errors import DataError
from analysis.models.architectures import build_model
from analysis.presentation import views
from analysis.testing.data import write_idx
from analysis.testing.runs import cli_error

SYNTH = "synthetic:classes=4,n=100,size=8,channels=1"  # sample i has label i % 4: 25 per class


def labels_and_ids(source) -> tuple[np.ndarray, np.ndarray]:
    batches = list(make_loader(source, 64))
    return torch.cat([b[1] for b in batches]).numpy(), torch.cat([b[2] for b in batches]).numpy()


@pytest.fixture
def fmnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Twelve 28x28 test images of labels 0..5 twice over, named by FASHION_MNIST_DIR."""
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((12, 28, 28), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(12) % 6)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    return "fashion-mnist:test"


@pytest.fixture
def wnid_folder(tmp_path: Path) -> str:
    """An ImageNet folder of three classes: goldfish (1), pug (254), toilet tissue (999), two PNGs each."""
    for wnid in ("n01443537", "n02110958", "n15075141"):
        (tmp_path / "val" / wnid).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (12, 10), (40 * i, 90, 200)).save(tmp_path / "val" / wnid / f"{i}.png")
    return f"imagefolder:{tmp_path / 'val'}"


def test_classes_by_name_and_index_on_synthetic_data_keep_their_labels_and_ids() -> None:
    source = select(open_data(SYNTH), classes=("class_3", "1"))
    labels, ids = labels_and_ids(source)
    assert sorted(set(labels)) == [1, 3] and len(labels) == 50
    assert (ids % 4 == labels).all() and len(set(ids)) == 50  # ids index the whole set: label = id % 4
    assert source.num_classes == 4 and source.class_names == ["class_0", "class_1", "class_2", "class_3"]
    assert source.describe()["selection"] == {"classes": [1, 3], "per_class": None, "seed": 0, "short": {}}
    assert source.describe()["size"] == 50


def test_classes_by_name_and_index_on_fashion_mnist(fmnist: str) -> None:
    labels, ids = labels_and_ids(select(open_data(fmnist), classes=("5", "Trouser")))
    assert labels.tolist() == [1, 5, 1, 5] and ids.tolist() == [1, 5, 7, 11]


def test_classes_by_wnid_name_and_index_on_an_imagenet_folder(wnid_folder: str) -> None:
    source = open_data(wnid_folder, image_size=8)
    for chosen in (("n02110958", "goldfish"), ("254", "1"), ("pug", "n01443537")):
        labels, ids = labels_and_ids(select(source, classes=chosen))
        assert labels.tolist() == [1, 1, 254, 254] and ids.tolist() == [0, 1, 2, 3]


def test_unknown_or_absent_classes_are_one_sentence_with_valid_examples(wnid_folder: str, fmnist: str) -> None:
    with pytest.raises(DataError, match=r"has no class 'cat', '12'; e\.g\. 'class_0', 'class_1', 'class_2' or an"):
        select(open_data(SYNTH), classes=("class_2", "cat", "12"))
    with pytest.raises(DataError, match=r"holds no samples of class 'tench'; e\.g\. 'goldfish', 'pug', 'toilet"):
        select(open_data(wnid_folder, image_size=8), classes=("goldfish", "tench"))
    with pytest.raises(DataError, match="holds no samples of class 'Bag'"):
        select(open_data(fmnist), classes=("Bag",))
    with pytest.raises(DataError, match="names no class"):
        select(open_data(SYNTH), classes=())


def test_per_class_counts_are_exact_seeded_and_short_classes_are_taken_whole() -> None:
    source = open_data(SYNTH)
    drawn = {seed: labels_and_ids(select(source, per_class=7, seed=seed)) for seed in (0, 0, 1)}
    labels, ids = drawn[0]
    assert np.bincount(labels).tolist() == [7, 7, 7, 7] and len(set(ids)) == 28 and (ids % 4 == labels).all()
    assert np.array_equal(labels_and_ids(select(source, per_class=7, seed=0))[1], ids)  # same seed, same samples
    assert not np.array_equal(drawn[1][1], ids)  # another seed, other samples
    # A class's sample depends on (seed, class) only, not on which other classes are chosen.
    alone = labels_and_ids(select(source, classes=("2",), per_class=7, seed=0))[1]
    assert np.array_equal(alone, ids[labels == 2])
    short = select(open_data("synthetic:classes=3,n=14,size=8"), per_class=5)  # 5, 5, 4 samples
    assert np.bincount(labels_and_ids(short)[0]).tolist() == [5, 5, 4]
    assert selection_warnings(short) == ["--per-class 5: 1 classes have fewer samples, all of them taken (class_2 4)."]
    assert selection_warnings(select(source, per_class=5)) == []


def test_per_class_on_every_source_and_with_limit(wnid_folder: str, fmnist: str) -> None:
    labels, _ = labels_and_ids(select(open_data(fmnist), per_class=1))
    assert np.bincount(labels).tolist() == [1] * 6
    labels, _ = labels_and_ids(select(open_data(wnid_folder, image_size=8), classes=("pug",), per_class=1))
    assert labels.tolist() == [254]
    selected = select(open_data(SYNTH), per_class=10, seed=3)
    _, pool = labels_and_ids(selected)
    limited = list(make_loader(selected, 64, limit=8))
    labels, ids = torch.cat([b[1] for b in limited]).numpy(), torch.cat([b[2] for b in limited]).numpy()
    assert np.bincount(labels).tolist() == [2, 2, 2, 2] and set(ids) <= set(pool)  # limit draws from the selection


def test_collect_records_the_selection_and_ablates_on_it(tmp_path: Path, capsys) -> None:
    run_dir, weights = tmp_path / "run", tmp_path / "w.pth"
    torch.save(build_model("se_resnet20", in_channels=1, num_classes=4).state_dict(), weights)
    common = ["--model", "se_resnet20", "--weights", str(weights), "--data", SYNTH, "--quiet"]
    assert main(["collect", *common, "--out", str(run_dir), "--classes", "class_1,3", "--per-class", "30"]) == 0
    run = load_run(run_dir)
    assert run.document["data"]["selection"] == {"classes": [1, 3], "per_class": 30, "seed": 0,
                                             "short": {"class_1": 25, "class_3": 25}}
    assert run.document["job"]["classes"] == ["class_1", "3"] and run.document["stats"]["config"]["classes"] == [1, 3]
    assert run.document["warnings"][0].startswith("--per-class 30: 2 classes have fewer samples")
    assert run.document["stats"]["samples"] == 50 and run.blocks["classes"].eq(2).all()
    assert views.present_classes(run) == [1, 3] and views.summary(run)["classes"] == 2
    # ablate defaults to the run's selection, so class-mean gates exist for every image's class
    assert main(["ablate", str(run_dir), "--groups", "all", "--interventions", "class-mean", "--resamples", "5",
                 "--quiet"]) == 0
    assert load_run(run_dir).table("interventions")["samples"].tolist() == [50]
    err = cli_error(capsys, ["ablate", str(run_dir), "--classes", "0,1", "--groups", "all", "--interventions",
                             "class-mean", "--quiet"])
    assert "has no images of class 'class_0', so its class-mean gates are unknown" in err


@pytest.mark.parametrize(("extra", "says"), [
    (["--classes", "class_1,dog"], f"{SYNTH} has no class 'dog'; e.g. 'class_0', 'class_1', 'class_2' or an index"),
    (["--per-class", "0"], "--per-class must be at least 1, not 0"),
])
def test_bad_selection_on_the_command_line_exits_2(extra, says, tmp_path: Path, capsys) -> None:
    common = ["--model", "se_resnet20", "--random-init", "--data", SYNTH]
    for command in (["collect", *common, "--out", str(tmp_path / "run"), "--quiet"], ["eval", *common]):
        assert says in cli_error(capsys, [*command, *extra])
    assert not (tmp_path / "run").exists()
