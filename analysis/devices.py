"""Which torch device a `--device` option names."""

from __future__ import annotations

import torch

from analysis.errors import ModelSpecError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelSpecError(f"device {name} was asked for, but this machine has no CUDA GPU.")
    return torch.device(name)
