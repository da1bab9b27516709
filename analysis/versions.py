"""Versions of the software that produced a run or a checkpoint, for their metadata."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version


def software_versions() -> dict[str, str]:
    import timm
    import torch
    import torchvision

    try:
        own = version("se-analysis")
    except PackageNotFoundError:  # run from a source tree on PYTHONPATH, not installed
        own = "source tree"
    return {
        "se-analysis": own,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
    }
