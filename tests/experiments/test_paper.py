"""`se-analysis paper`: the SE paper's Role-of-Excitation study on a random SE-ResNet-50 of width 4
over a folder of ImageNet WordNet-id classes, checked against brute-force gate recording."""

from __future__ import annotations

import contextlib
import io
import itertools
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from analysis import find_gates, load_run, save_run
from analysis.cli import main
from analysis.data import open_data
from analysis.data.fashion_mnist import FASHION_MNIST_DIR
from analysis.errors import AnalysisError
from analysis.experiments.paper import (
    PAPER_BLOCKS,
    PAPER_CLASSES,
    Protocol,
    choose,
    default_blocks,
    numbers,
    sample_channels,
)
from analysis.measures import tables
from analysis.measures.probe import Probe
from analysis.models.architectures import build_model
from analysis.models.checkpoint import load_checkpoint, save_checkpoint
from analysis.presentation import views
from analysis.presentation.numbers import formatted
from analysis.presentation.paper_page import excitation_profiles
from analysis.presentation import report
from analysis.presentation.report import Report, write_index
from analysis.resources import shipped_checkpoint
from analysis.testing.nets import record_gates
from analysis.testing.planted import planted_stats, resnet_gates
from analysis.testing.runs import cli_error

TENCH = "n01440764"  # ImageNet class 0: a class beside the paper's, so that "all" is not their mean
WNIDS = [TENCH, *(c.wnid for c in PAPER_CLASSES)]
IMAGES, PER_CLASS, CHANNELS, SEED = 6, 5, 8, 3


def image_folder(root: Path) -> Path:
    """IMAGES small PNGs per class folder, each class a colour of its own plus noise."""
    rng = np.random.default_rng(0)
    for i, wnid in enumerate(WNIDS):
        (root / wnid).mkdir(parents=True)
        for j in range(IMAGES):
            pixels = rng.random((20, 20, 3)) * 100 + rng.random(3) * 60 + 12 * i
            Image.fromarray(pixels.astype(np.uint8)).save(root / wnid / f"{j}.png")
    return root


def fake_probe(values, labels, **_) -> Probe:
    """Stands in for the logistic probe, about a second per fit on two loaded cores (48 fits a run):
    these tests read the probe's columns, never its fit."""
    return Probe(float(np.asarray(values).mean()), 0.25, 1.0, 1.0)


@pytest.fixture(scope="module", autouse=True)
def quick():
    """The fake probe, and one intra-op thread: a second one made this model's forward pass 60 times
    slower on two loaded cores (its kernels take microseconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tables, "probe", fake_probe)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """(run, command output, model, data spec, checkpoint) of one `se-analysis paper` run."""
    root = tmp_path_factory.mktemp("paper")
    data = f"imagefolder:{image_folder(root / 'val')}"
    torch.manual_seed(0)
    arch = {"width": 4, "num_classes": 1000, "reduction": 4}  # a WordNet-id folder is labelled by ImageNet's outputs
    save_checkpoint(build_model("se_resnet50", **arch), root / "ckpt" / "final", {"arch": "se_resnet50", "arch_args": arch})
    out = root / "run <b>"  # run text is shown as text
    argv = ["paper", "--model", str(root / "ckpt"), "--data", data, "--out", str(out), "--image-size", "16",
            "--channels", str(CHANNELS), "--per-class", str(PER_CLASS), "--seed", str(SEED), "--quiet"]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(argv) == 0
    return load_run(out), printed.getvalue(), load_checkpoint(root / "ckpt")[0], data, root / "ckpt"


@pytest.fixture(scope="module")
def brute(study) -> dict:
    """By plain hooks over the images the run collected (all of them are in its reservoir): every
    gate vector [N, C] by gate path, the labels, and top-1 accuracy plain and with stage 5's gates at 1."""
    run, _, model, data, _ = study
    dataset = open_data(data, image_size=16).dataset
    _, labels, ids = run.stats.reservoir("SE_2_1")
    x, y = torch.stack([dataset[i][0] for i in ids.tolist()]), torch.tensor([dataset[i][1] for i in ids.tolist()])
    assert torch.equal(y, labels)
    gates = find_gates(model)
    found = {"gates": record_gates(model, [g.path for g in gates], x), "labels": y.numpy()}
    modules = dict(model.named_modules())
    with torch.no_grad():
        found["plain"] = (model(x).argmax(1) == y).double().mean().item()
        handles = [modules[g.path].register_forward_hook(lambda m, i, o: torch.ones_like(o))
                   for g in gates if g.name.startswith("SE_5_")]
        found["removed"] = (model(x).argmax(1) == y).double().mean().item()
        for h in handles:
            h.remove()
    return found


def test_figure_data_are_the_brute_force_class_means_of_the_seeded_channels(study, brute):
    run, _, model, data, _ = study
    paper, labels = run.table("paper"), brute["labels"]
    drawn = list(dict.fromkeys(paper["block"]))  # the paper's blocks with the run's onsets, in depth order
    assert drawn == views.default_blocks(run) and set(PAPER_BLOCKS) | set(views.onset_blocks(run)) == set(drawn)
    assert drawn == [b for b in views.block_names(run) if b in drawn]
    assert np.unique(labels, return_counts=True)[1].tolist() == [PER_CLASS] * len(WNIDS)  # --per-class of each
    gates = {g.name: g for g in find_gates(model)}
    paper_labels = [1, 254, 726, 404, 972]  # goldfish, pug, plane, airliner, cliff: the models' output indices
    spread = {1, 726, 404}
    for block in PAPER_BLOCKS:
        s = brute["gates"][gates[block].path].numpy()
        rng = np.random.default_rng([SEED, zlib.crc32(block.encode())])  # the documented draw
        picked = np.sort(rng.choice(gates[block].channels, CHANNELS, replace=False))
        rows = paper[paper["block"] == block]
        expected = {k: s[labels == k][:, picked] for k in paper_labels} | {-1: s[:, picked]}
        assert list(dict.fromkeys(rows["class"])) == [*paper_labels, -1]
        for k, values in expected.items():
            got = rows[rows["class"] == k]
            assert got["channel"].tolist() == picked.tolist() and got["position"].tolist() == list(range(CHANNELS))
            np.testing.assert_allclose(got["mean"], values.mean(0), rtol=0, atol=1e-6)
            np.testing.assert_allclose(got["std"], values.std(0), rtol=0, atol=1e-5)
            assert (got["count"] == len(values)).all() and (got["spread"] == (k in spread)).all()


def test_sampled_channels_are_reproducible_and_uniform():
    first = sample_channels("SE_4_6", 1024, 50, seed=0)
    assert np.array_equal(first, sample_channels("SE_4_6", 1024, 50, seed=0))
    assert len(set(first)) == 50 and np.all(np.diff(first) > 0) and first.max() < 1024
    assert not np.array_equal(first, sample_channels("SE_4_6", 1024, 50, seed=1))
    assert not np.array_equal(first, sample_channels("SE_5_1", 1024, 50, seed=0))
    # every pair of 6 channels equally likely: chi-square over the 15 pairs, 3000 seeds
    counts = pd.Series([tuple(sample_channels("SE_2_3", 6, 2, seed)) for seed in range(3000)]).value_counts()
    assert sorted(counts.index) == list(itertools.combinations(range(6), 2))
    chi2 = float((((counts - 200) ** 2) / 200).sum())
    assert chi2 < 36.1  # the 99.9% point of chi-square with 14 degrees of freedom


def test_numbers_are_the_runs_block_rows_and_removing_stage_5_is_measured(study, brute):
    run, printed, *_ = study
    shown = numbers(run, list(PAPER_BLOCKS))
    assert shown["block"].tolist() == list(PAPER_BLOCKS)
    for column in ("eta2_mean", "eta2_perm", "shape_sep", "shape_sep_perm_max", "probe_acc", "class_mod", "sat_high",
                   "sat_low"):
        assert shown[column].tolist() == [run.blocks.set_index("block").at[b, column] for b in PAPER_BLOCKS], column
    cells = formatted(numbers(run, views.default_blocks(run))).set_index("block", drop=False)
    for block in PAPER_BLOCKS:  # the printed table: the same numbers, each column to its precision
        line = next(line.split() for line in printed.splitlines()
                    if line.split()[:2] == [block, cells.loc[block, "channels"]])
        assert line == cells.loc[block, views.present(run, tuple(cells.columns))].tolist()
    (removal,) = run.table("interventions").itertuples()
    assert (removal.group, removal.kind, removal.blocks, removal.intervention) == (
        "SE_5_*", "stage", "SE_5_1,SE_5_2,SE_5_3", "ones")
    plain, removed = brute["plain"], brute["removed"]
    assert (removal.samples, removal.acc_base, removal.acc) == (len(brute["labels"]), pytest.approx(plain),
                                                                pytest.approx(removed))
    r = run.blocks.set_index("block").loc["SE_5_2"]
    assert f"{r['sat_high']:.1%} of its gates >= 0.9" in printed and f"top-1 {plain:.2%} -> {removed:.2%}" in printed


def test_the_page_shows_the_figures_numbers_and_run_text_as_text(study):
    run, printed, *_ = study
    page = (run.path / "paper.html").read_text()
    assert printed.strip().endswith(f"page {run.path / 'paper.html'}")
    assert page.count("src='data:image/png;base64,") == 2 and "Fig. 6" in page and "Fig. 7" in page
    assert "run &lt;b&gt;" in page and "run <b>" not in page
    assert "Removing the last stage" in page and "eta2_untrained" in page  # the untrained controls are collected by default
    assert "Label-permutation null" in page  # column meanings come from the schema


def test_bad_input_is_one_sentence_and_writes_nothing(study, capsys, tmp_path):
    _, _, _, data, checkpoint = study
    out = tmp_path / "bad"
    base = ["paper", "--model", str(checkpoint), "--data", data, "--out", str(out), "--image-size", "16", "--quiet"]
    assert "has no class 'unicorn'" in cli_error(capsys, [*base, "--classes", "goldfish,unicorn"])
    assert "holds no samples of class 'ostrich'" in cli_error(capsys, [*base, "--classes", "goldfish,ostrich"])
    assert "has no SE block 'SE_5_4'" in cli_error(capsys, [*base, "--blocks", "SE_2_3,SE_5_4"])
    assert "--channels 17 is more than the 16 channels of SE_2_3" in cli_error(capsys, [*base, "--channels", "17"])
    assert "--per-class must be at least 1" in cli_error(capsys, [*base, "--per-class", "0"])
    assert not out.exists()


def test_defaults_where_a_model_lacks_the_papers_blocks_or_the_data_its_classes():
    resnet18 = [f"SE_{s}_{b}" for s in (2, 3, 4, 5) for b in (1, 2)]
    assert default_blocks(resnet18) == ["SE_2_2", "SE_3_2", "SE_4_2", "SE_5_1", "SE_5_2"]
    resnet101 = [f"SE_{s}_{b + 1}" for s, n in zip((2, 3, 4, 5), (3, 4, 23, 3)) for b in range(n)]
    assert default_blocks(resnet101) == list(PAPER_BLOCKS)
    # the onsets always among them, in forward order; a model without stages: 6 spread over its depth
    assert default_blocks(resnet18, include=["SE_3_1"]) == ["SE_2_2", "SE_3_1", "SE_3_2", "SE_4_2", "SE_5_1", "SE_5_2"]
    flat = [f"SE_{i}" for i in range(1, 13)]
    assert default_blocks(flat) == ["SE_1", "SE_3", "SE_5", "SE_8", "SE_10", "SE_12"]
    assert default_blocks(flat, include=["SE_7"]) == ["SE_1", "SE_3", "SE_5", "SE_7", "SE_8", "SE_10", "SE_12"]


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="needs dataset-fashion-mnist")
def test_the_shipped_network_gets_its_own_blocks_and_classes():
    model, _ = load_checkpoint(shipped_checkpoint("fmnist_se20"))
    source = open_data("fashion-mnist:test")
    choice = choose(Protocol(), {g.name: g.channels for g in find_gates(model)}, source)
    assert choice.blocks == ("SE_2_3", "SE_3_3", "SE_4_1", "SE_4_2", "SE_4_3")  # last of each stage, all of the last
    assert [source.class_names[k] for k in choice.classes] == ["T-shirt/top", "Dress", "Shirt", "Ankle boot"]
    assert choice.spread == choice.classes[:2]
    asked = choose(Protocol(classes=("Bag", "0")), {g.name: g.channels for g in find_gates(model)}, source)
    assert asked.classes == (0, 8) and asked.spread == (0, 8)


def test_the_papers_classes_are_imagenets():
    from timm.data import ImageNetInfo

    info = ImageNetInfo("imagenet-1k")
    for c in PAPER_CLASSES:
        assert info.index_to_label_name(c.index) == c.wnid
        assert info.label_name_to_description(c.wnid).split(", ")[0] == c.name


def test_the_report_carries_the_paper_page_and_the_index_links_it(study, tmp_path, monkeypatch):
    run, *_ = study
    monkeypatch.setattr(report, "run_figures", lambda run: {})  # the report's own figures are tested elsewhere
    folder = report.write_run_report(run, tmp_path / "report").folder
    assert (folder / "paper.html").read_text() == (run.path / "paper.html").read_text()
    assert "href='paper.html'" in (folder / "report.html").read_text()
    plain = save_run(planted_stats(resnet_gates((4, 6), (1, 1)), 3, 10), tmp_path / "plain", {"model": "planted"})
    reports = [Report(r, tmp_path / name, views.summary(r)) for r, name in ((run, "a"), (plain, "b"))]
    index = write_index(reports, tmp_path).read_text()
    assert "href='a/paper.html'" in index and "href='b/paper.html'" not in index and "href='b/report.html'" in index


def test_the_figures_draw_the_tables_series(study):
    """Figs. 6-7 as the reports draw profiles: per block a strip with the all-images curve, below it each
    class's curve minus that one; Fig. 7 the spread classes with bands, in Fig. 6's colours."""
    run, *_ = study
    paper = run.table("paper")
    profiles, spread = excitation_profiles(paper), excitation_profiles(paper, spread=True)
    colours = {}
    for fig, drawn in ((profiles, paper), (spread, paper[paper["spread"]])):
        assert isinstance(fig, Figure) and fig.canvas.manager is None  # a plain Figure, not pyplot's
        blocks = list(dict.fromkeys(paper["block"]))
        for (strip, ax), block in zip(zip(fig.axes[::2], fig.axes[1::2]), blocks, strict=True):
            rows, everything = drawn[drawn["block"] == block], paper[(paper["block"] == block) & (paper["class"] == -1)]
            assert strip.get_title() == block
            np.testing.assert_array_equal(strip.get_lines()[0].get_ydata(), everything["mean"])
            lines = {line.get_label(): line for line in ax.get_lines() if line.get_label() != "all classes"}
            assert list(lines) == list(dict.fromkeys(rows.loc[rows["class"] != -1, "class_name"]))
            for name, line in lines.items():
                mean = rows.loc[rows["class_name"] == name, "mean"].to_numpy()
                np.testing.assert_allclose(line.get_ydata(), mean - everything["mean"].to_numpy(), atol=1e-15)
                assert colours.setdefault(name, line.get_color()) == line.get_color()
            assert len(ax.collections) == (len(lines) if fig is spread else 0)  # the +- std bands