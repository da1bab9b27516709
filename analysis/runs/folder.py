"""Run folders: one analysis run on disk, written atomically, read lazily.

    runs/x/meta.json            what was analysed and how (model, data, gates, versions, onset)
    runs/x/stats.safetensors    the raw GateStats, enough to recompute every table or merge runs
    runs/x/inputs.safetensors   the GateStats of the SE blocks' squeezed inputs z (meta["inputs"]), if collected
    runs/x/blocks.parquet       one row per SE block (see analysis.metrics)
    runs/x/channels.parquet     one row per gate channel
    runs/x/class_means.parquet  one row per block x class x channel
    runs/x/<extra>.parquet      tables added later by other commands (EXTRA_TABLES), e.g. ablations

The folder is written under a temporary name and renamed into place, so an interrupted run never
leaves a folder that looks complete, and an existing run is replaced only when asked.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from analysis.errors import RunFolderError
from analysis.files import replacing
from analysis.capture.stats import GateStats
from analysis.versions import software_versions

RUN_VERSION = 2  # 2: shifted moments, per-channel histogram ranges, permutation tables, squeeze inputs
TABLES = ("blocks", "channels", "class_means")
EXTRA_TABLES = ("interventions", "attributions", "attribution_blocks")


def check_writable(out: str | Path, overwrite: bool = False) -> Path:
    """Refuse early (before a long collection) to replace an existing run unless asked."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise RunFolderError(f"{out} already exists; choose another --out or pass --overwrite.")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} exists and is not a folder.")
    return out


def write_run(
    stats: GateStats,
    out: str | Path,
    meta: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    *,
    overwrite: bool = False,
) -> Run:
    """Write the run folder `out` atomically: the statistics, `tables` (each of TABLES) and meta.json.

    The tables are computed by the caller (`analysis.jobs.save_run` computes every one from `stats`),
    so that this stage stores results without knowing how they are measured.
    """
    out = check_writable(out, overwrite)
    missing = [name for name in TABLES if name not in tables]
    if missing:
        raise RunFolderError(f"a run needs the tables {', '.join(TABLES)}; {', '.join(missing)} missing.")
    full_meta = {
        "version": RUN_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
        "software": software_versions(),
        **meta,
        "stats": stats.describe(),
        "inputs": stats.inputs.describe() if stats.inputs is not None else None,
    }
    with replacing(out) as tmp:
        tmp.mkdir()
        save_file(stats.state_dict(), str(tmp / "stats.safetensors"))
        if stats.inputs is not None:
            save_file(stats.inputs.state_dict(), str(tmp / "inputs.safetensors"))
        for name in TABLES:
            tables[name].to_parquet(tmp / f"{name}.parquet", index=False)
        # meta.json last: its presence marks a complete folder.
        (tmp / "meta.json").write_text(json.dumps(full_meta, indent=2, default=str))
    return load_run(out)


@dataclass
class Run:
    """An opened run folder; tables are read on first access."""

    path: Path
    meta: dict[str, Any]
    _cache: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def table(self, name: str) -> pd.DataFrame:
        """A table of the run; RunFolderError if the run does not have it."""
        if name not in TABLES + EXTRA_TABLES:
            raise RunFolderError(f"a run has no table {name!r}; tables: {', '.join(TABLES + EXTRA_TABLES)}.")
        if name in EXTRA_TABLES and not self.has_table(name):
            raise RunFolderError(f"{self.path} has no {name} table yet.")
        if name not in self._cache:
            try:
                self._cache[name] = pd.read_parquet(self.path / f"{name}.parquet")
            except (OSError, ValueError) as e:
                raise RunFolderError(f"{self.path / name}.parquet cannot be read: {e}.") from None
        return self._cache[name]

    @property
    def blocks(self) -> pd.DataFrame:
        return self.table("blocks")

    @property
    def channels(self) -> pd.DataFrame:
        return self.table("channels")

    @property
    def class_means(self) -> pd.DataFrame:
        return self.table("class_means")

    @property
    def onset(self) -> str | None:
        return self.meta["onset"]["block"]

    def has_table(self, name: str) -> bool:
        return (self.path / f"{name}.parquet").is_file()

    def add_table(self, name: str, table: pd.DataFrame) -> None:
        """Store an extra table in the run (replacing an older one), atomically."""
        if name not in EXTRA_TABLES:
            raise RunFolderError(f"{name!r} is not an extra run table; extra tables: {', '.join(EXTRA_TABLES)}.")
        with replacing(self.path / f"{name}.parquet") as tmp:
            table.to_parquet(tmp, index=False)
        self._cache[name] = table

    def gate_tensor(self, gate: str, field: str) -> torch.Tensor:
        """One stored tensor of one gate (e.g. "hist", "top_ids"), read alone from the file.

        Reading a single tensor keeps the dashboard fast on ImageNet-scale runs, whose full
        statistics are gigabytes.
        """
        key = f"{gate}/{field}"
        try:
            with safe_open(str(self.path / "stats.safetensors"), framework="pt") as f:
                if key not in f.keys():
                    raise RunFolderError(f"{self.path}/stats.safetensors has no {key}.")
                return f.get_tensor(key)
        except (OSError, SafetensorError) as e:
            raise RunFolderError(f"{self.path}/stats.safetensors is damaged or unreadable: {e}.") from None

    @cached_property
    def stats(self) -> GateStats:
        """The raw statistics, rebuilt on the CPU; their `inputs` are read on first access."""
        stats = self._read_stats("stats", self.meta["stats"])
        if self.meta.get("inputs"):
            stats.inputs = lambda: self._read_stats("inputs", self.meta["inputs"])
        return stats

    def _read_stats(self, name: str, description: dict[str, Any]) -> GateStats:
        try:
            return GateStats.from_state(description, load_file(str(self.path / f"{name}.safetensors")))
        except (OSError, KeyError, ValueError, SafetensorError) as e:
            raise RunFolderError(f"{self.path}/{name}.safetensors does not match meta.json or is damaged: {e}.") from None


def load_run(path: str | Path) -> Run:
    """Open a run folder; RunFolderError if it is missing, incomplete or of another version."""
    path = Path(path)
    if not path.is_dir():
        raise RunFolderError(f"{path} is not a run folder (it does not exist).")
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise RunFolderError(f"{path} is not a complete run folder: meta.json is missing.")
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFolderError(f"{meta_file} cannot be read: {e}.") from None
    if not isinstance(meta, dict) or meta.get("version") != RUN_VERSION:
        found = meta.get("version") if isinstance(meta, dict) else None
        raise RunFolderError(f"{path} is a run of format version {found}, this toolkit reads version {RUN_VERSION}.")
    missing = [f for f in ("stats.safetensors", *(f"{t}.parquet" for t in TABLES)) if not (path / f).is_file()]
    if missing:
        raise RunFolderError(f"{path} is incomplete: {', '.join(missing)} missing.")
    return Run(path, meta)
