"""CLI options from the library's declarations: help written beside a field wins, % survives argparse."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Annotated

import pytest

from analysis.errors import OptionError
from analysis.options import Help, Range, add_options, check_fields


@dataclass(frozen=True)
class Job:
    steps: Annotated[int, Range(1), Help("steps to take, 100% of them")] = 3
    mode: str = "fast"

    def __post_init__(self) -> None:
        check_fields(self)


def test_help_beside_a_field_is_the_options_help_and_wins_over_the_shared_texts():
    parser = argparse.ArgumentParser()
    add_options(parser, Job, help={"steps": "a shared text", "mode": "how to run"}, choices={"mode": ("fast", "slow")})
    text = parser.format_help()  # raised on the bare % before
    assert "steps to take, 100% of them (default: 3)" in text and "a shared text" not in text
    assert "how to run (default: fast)" in text
    assert parser.parse_args(["--steps", "5", "--mode", "slow"]) == argparse.Namespace(steps=5, mode="slow")
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "other"])
    with pytest.raises(OptionError, match="--steps must be at least 1, not 0"):
        Job(steps=0)
