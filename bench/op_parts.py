"""Charge the time of every torch call to the part of the project that issued it.

    with OpParts() as parts:
        step()                         # any eager code
    parts.ms, parts.calls              # {part: milliseconds}, {part: torch calls}

A TorchFunctionMode times each torch function call (the Python API: conv2d, mean, index_add_, ...;
a call made inside another one is part of it) and walks the Python stack at that moment to the
frames in analysis/capture/; the part is read from the innermost one's file, function and source
line (`_part`), written against both the code of commit 175dd8b and today's. A call from no capture
frame is the network's own ("network"); one made while a block runs again in float32 inside a hook is
"float32 re-run", whatever issued it. The mode's own work is outside the timed call, but it slows the
run: read the shares and ms as profiled, the throughput from the timed runs.
"""

from __future__ import annotations

import linecache
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

PARTS = ("network", "hooks", "pooling", "float32 re-run", "moments", "permutation tables", "histogram binning",
         "reservoir", "top-k", "saturation and checks", "squeezed inputs", "batch setup", "other statistics")
CAPTURE = f"{Path('analysis') / 'capture'}"
# (words in the source line, part) for lines of GateStats' own files, first match wins
STATS_LINES = [(("perm",), "permutation tables"), (("hist", "cell"), "histogram binning"),
               (("reservoir", "slot", "sampler", "dest"), "reservoir"), (("top",), "top-k"),
               (("sat_", "below", "above", "nonfinite", "min", "max"), "saturation and checks"),
               (("count", "sum", "xx", "x = ", "s64", "shift"), "moments")]


def _frames() -> list[tuple[str, str, str]]:
    """(file name, function, source line) of the capture frames on the stack, innermost first."""
    out = []
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        if CAPTURE in path:
            line = linecache.getline(path, frame.f_lineno)
            out.append((Path(path).name, frame.f_code.co_name, line))
        frame = frame.f_back
    return out


def _part(frames: list[tuple[str, str, str]]) -> str:
    if not frames:
        return "network"
    if any(f == "_rerun" or (name == "collect.py" and ("_rerun(" in line or "self.modules[" in line))
           for name, f, line in frames):
        return "float32 re-run"
    if any("inputs." in line for _, _, line in frames):
        return "squeezed inputs"
    name, function, line = frames[0]
    if name in ("collect.py", "hooks.py", "calls.py"):
        return "pooling" if ".mean(" in line else "hooks"
    if function == "update":
        return "hooks"
    if name == "ranges.py":
        return "histogram binning" if function == "bin_cells" else "other statistics"
    if name == "reservoir.py":
        return "reservoir"
    if name == "keys.py":
        return {"top_k": "top-k", "permuted_labels": "permutation tables"}.get(function, "batch setup")
    if function == "begin_batch":
        return "permutation tables" if "perm" in line else "batch setup"
    return next((part for words, part in STATS_LINES if any(w in line for w in words)), "other statistics")


class OpParts(TorchFunctionMode):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.ms: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)  # calls that return a tensor (not .shape, .dim(), ...)

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        part = _part(_frames())
        start = time.perf_counter_ns()
        out = func(*args, **(kwargs or {}))
        self.ms[part] += (time.perf_counter_ns() - start) / 1e6
        self.calls[part] += isinstance(out, torch.Tensor)
        return out
