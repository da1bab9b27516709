"""Shipped files in a source checkout: the demo checkpoint in checkpoints/, the app in dashboard/."""

from __future__ import annotations

from pathlib import Path

import analysis
from analysis.resources import dashboard_app, shipped_checkpoint

SOURCE = Path(analysis.__file__).resolve().parent.parent  # the checkout these tests run from


def test_demo_checkpoint_is_the_source_trees_when_not_installed() -> None:
    folder = shipped_checkpoint("fmnist_se20")
    assert folder == SOURCE / "checkpoints" / "fmnist_se20"
    assert (folder / "final.safetensors").is_file() and (folder / "final.json").is_file()


def test_dashboard_app_is_the_source_trees_app_file() -> None:
    assert dashboard_app() == SOURCE / "dashboard" / "app.py" and dashboard_app().is_file()
