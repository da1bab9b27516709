"""The notebook API: `import analysis` stays light, `dir(analysis)` is the API, and its names work."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

import analysis
from analysis import errors
from analysis.measures.tables import run_tables
from analysis.models.checkpoint import load_checkpoint
from analysis.models.spec import build_from_spec
from analysis.testing.planted import planted_stats, resnet_gates

HEAVY = ("torchvision", "scipy", "captum", "streamlit", "matplotlib", "seaborn", "timm", "pandas", "torch")
SHIPPED = str(Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist_se20")


def imported_by(code: str) -> list[str]:
    """The HEAVY libraries in sys.modules after `code`, run in a fresh interpreter."""
    check = f"import sys\n{code}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return [m for m in done.stdout.strip().split(",") if m]


def test_import_analysis_imports_no_heavy_library():
    assert imported_by("import analysis") == []
    # a name is imported on first use, and only what it needs: collecting needs no plotting, scipy or captum
    assert not {"torchvision", "scipy", "captum", "streamlit", "matplotlib"} & set(imported_by(
        "import analysis; analysis.collect"))


def test_dir_lists_the_api_and_every_name_resolves():
    assert dir(analysis) == sorted(analysis.__all__)
    assert not [name for name in analysis.__all__ if name.startswith("_")]
    for name in analysis.__all__:
        assert getattr(analysis, name) is not None
    assert {"open_model", "open_data", "make_loader", "collect", "tables", "save_run", "load_run", "ablate",
            "attribute"} <= set(analysis.__all__)


def test_every_exception_is_exported():
    defined = {name for name, value in vars(errors).items()
               if inspect.isclass(value) and issubclass(value, errors.AnalysisError)}
    assert len(defined) >= 14 and defined <= set(analysis.__all__)
    assert all(getattr(analysis, name) is getattr(errors, name) for name in defined)


def test_an_unknown_name_is_an_attribute_error():
    try:
        analysis.no_such_name  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("analysis.no_such_name did not raise")


def test_tables_are_the_run_folders_tables_without_writing(tmp_path):
    stats = planted_stats(resnet_gates((8, 8, 16, 16), (2, 2)), num_classes=4, samples_per_class=20)
    tables = analysis.tables(stats)
    assert list(tmp_path.iterdir()) == []
    run = analysis.save_run(stats, tmp_path / "run")
    for name in ("blocks", "channels", "class_means"):
        pd.testing.assert_frame_equal(getattr(tables, name), getattr(run, name), check_dtype=False,
                                      check_categorical=False)
    assert tables.onset["block"] == run.meta.onset.block
    assert tables.onset["detectable"] == run.meta.onset.detectable
    found, onset = run_tables(stats)
    assert onset == tables.onset and list(found) == ["blocks", "channels", "class_means"]


def test_open_model_opens_a_checkpoint_and_a_spec_in_eval_mode():
    model = analysis.open_model(SHIPPED)
    expected = load_checkpoint(SHIPPED)[0]
    assert not model.training
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), expected.state_dict().values()))
    drawn = analysis.open_model("se_resnet20", random_init=True, num_classes=3, in_channels=1, seed=4)
    again = build_from_spec("se_resnet20", random_init=True, num_classes=3, in_channels=1, seed=4)[0]
    assert not drawn.training and drawn.fc.out_features == 3
    assert all(torch.equal(a, b) for a, b in zip(drawn.state_dict().values(), again.state_dict().values()))
