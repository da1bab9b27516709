"""Files the package ships beside its code: the demo checkpoint and the dashboard's app.

A wheel carries checkpoints/ as the package data `analysis/shipped/` (pyproject.toml maps it there);
a source checkout, or an editable install of one, keeps it in checkpoints/ beside the package.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_checkpoint(name: str) -> Path:
    """The folder of the shipped checkpoint `name` ("fmnist_se20"): the installed copy, else the source tree's."""
    installed = Path(str(resources.files("analysis") / "shipped" / name))
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "checkpoints" / name


def dashboard_app() -> Path:
    """The dashboard's Streamlit entry point, a file on disk that `streamlit run` can open."""
    return Path(str(resources.files("dashboard") / "app.py"))
