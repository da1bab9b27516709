"""The wheel: built from the files a fresh clone has, installed elsewhere, it runs the demo from any folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLONED = ("pyproject.toml", "README.md", "analysis", "dashboard", "checkpoints")  # what the build reads
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
PIP = (sys.executable, "-m", "pip", "--disable-pip-version-check", "-q")


def module_folders(top: str) -> set[str]:
    """Dotted names of `top` and of every folder under it that holds a Python module."""
    root = REPO / top
    folders = {p.parent for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    return {".".join(folder.relative_to(REPO).parts) for folder in folders | {root}}


def test_every_folder_of_modules_is_a_listed_package() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert module_folders("analysis") | module_folders("dashboard") <= listed


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the source tree, installed with --target into a fresh folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    (tmp / "src").mkdir()
    for name in CLONED:
        source, copy = REPO / name, tmp / "src" / name
        if source.is_dir():
            shutil.copytree(source, copy, ignore=ignore)
        else:
            shutil.copy2(source, copy)
    env = {**os.environ, "PIP_NO_INDEX": "1"}  # everything needed is local: never reach out
    subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", tmp / "src"],
                   check=True, env=env, timeout=120)
    (wheel,) = (tmp / "dist").glob("se_analysis-*.whl")
    subprocess.run([*PIP, "install", "--no-deps", "--target", tmp / "site", wheel], check=True, env=env, timeout=120)
    return tmp / "site"


def run_installed(site: Path, cwd: Path, code: str) -> subprocess.CompletedProcess[str]:
    """`code` run by the venv's Python from `cwd`, with the installed wheel as the only `analysis`."""
    env = {**os.environ, "PYTHONPATH": str(site)}
    check = f"import analysis, pathlib; assert pathlib.Path(analysis.__file__).is_relative_to({str(site)!r})\n"
    return subprocess.run([sys.executable, "-c", check + code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_installed_wheel_runs_the_demo_from_another_folder(site: Path, tmp_path: Path) -> None:
    if not FASHION_MNIST.is_dir():
        pytest.skip(f"the demo reads Fashion-MNIST from {FASHION_MNIST} (Debian's dataset-fashion-mnist)")
    argv = ["analysis", "demo", "--out", "X/demo", "--reports", "Y", "--limit", "1000", "--control-seeds", "1", "--quiet"]
    demo = f"import runpy, sys; sys.argv = {argv!r}; runpy.run_module('analysis', run_name='__main__')"  # python -m
    done = run_installed(site, tmp_path, demo)
    assert done.returncode == 0, done.stderr
    meta = json.loads((tmp_path / "X" / "demo" / "meta.json").read_text())
    assert meta["job"]["limit"] == 1000
    assert Path(meta["model"]).is_relative_to(site / "analysis" / "shipped" / "fmnist_se20")
    (report,) = [line.split(" ", 1)[1] for line in done.stdout.splitlines() if line.startswith("report ")]
    assert (tmp_path / report).is_file() and (tmp_path / report).is_relative_to(tmp_path / "Y")


@pytest.mark.slow
def test_installed_wheel_carries_the_dashboard_app(site: Path, tmp_path: Path) -> None:
    done = run_installed(site, tmp_path, "from analysis.resources import dashboard_app; print(dashboard_app())")
    assert done.returncode == 0, done.stderr
    app = Path(done.stdout.strip())
    assert app.is_file() and app == site / "dashboard" / "app.py"
    # The installed command itself, up to the point where it would start the server.
    env = {**os.environ, "PYTHONPATH": str(site)}
    command = [site / "bin" / "se-analysis", "dashboard", "--runs", "absent"]
    refused = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "absent is not a folder of runs" in refused.stderr
