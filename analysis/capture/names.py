"""Gate names, built and read in this one place: `SE_{stage}_{block}` with ResNet stage numbering where
the model has stages (SE-ResNet-50: SE_2_1 .. SE_5_3), else `SE_{i}` in forward order; the k-th run of a
gate module that runs several times in one forward pass is `NAME.k`.

    stage_name(3, 4) == "SE_3_4";  stage_of("SE_3_4") == stage_of("SE_3_4.2") == 3;  stage_of("SE_7") is None

The same string keys statistics, tables, figures and the dashboard.
"""

from __future__ import annotations

import re

_STAGE_NAME = re.compile(r"SE_(\d+)_(\d+)(?:\.\d+)?")


def stage_name(stage: int, block: int) -> str:
    """The name of block `block` of stage `stage` (both 1-based, as the paper numbers them)."""
    return f"SE_{stage}_{block}"


def index_name(index: int) -> str:
    """The name of the `index`-th gate (1-based) of a model without stages."""
    return f"SE_{index}"


def run_name(name: str, run: int) -> str:
    """The name of the `run`-th run (1-based) of gate `name` in one forward pass."""
    return f"{name}.{run}"


def stage_of(name: str) -> int | None:
    """The stage of a `SE_{stage}_{block}` name (or a run of it, `.k`); None for a name without one."""
    m = _STAGE_NAME.fullmatch(name)
    return int(m[1]) if m else None


def stage_group(stage: int) -> str:
    """The name of a whole stage's blocks as interventions and figures group them: `SE_{stage}_*`."""
    return f"SE_{stage}_*"
