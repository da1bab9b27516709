"""Versions of the software that produced a run or a checkpoint, for their metadata."""

from __future__ import annotations

import platform
from importlib.metadata import version


def software_versions() -> dict[str, str]:
    import timm
    import torch
    import torchvision

    return {
        "se-analysis": version("se-analysis"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
    }
