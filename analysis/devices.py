"""Which torch device a `--device` option names."""

from __future__ import annotations

import re

import torch

from analysis.errors import OptionError

DEVICE_NAMES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str) -> torch.device:
    """The device `name` names; OptionError for any other name or a GPU this machine lacks."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise OptionError(f"unknown device {name!r}; use {DEVICE_NAMES}.")
    if not torch.cuda.is_available():
        raise OptionError(f"device {name} was asked for, but this machine has no CUDA GPU.")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise OptionError(f"device {name} was asked for, but this machine has {torch.cuda.device_count()} GPUs.")
    return torch.device(name)
