"""Run folders: one analysis run on disk, written atomically, read lazily.

    runs/x/meta.json            what was analysed and how (model, data, gates, versions, onset)
    runs/x/stats.safetensors    the raw GateStats, enough to recompute every table or merge runs
    runs/x/inputs.safetensors   the GateStats of the SE blocks' squeezed inputs z (meta["inputs"]), if collected
    runs/x/blocks.parquet       one row per SE block (see analysis.measures.tables)
    runs/x/channels.parquet     one row per gate channel
    runs/x/class_means.parquet  one row per block x class x channel
    runs/x/<extra>.parquet      tables added later by other commands (EXTRA_TABLES), e.g. ablations
    runs/x/paper.html           the SE paper's study drawn from the run (`se-analysis paper`)
    runs/x/untrained/seed_S/    the controls (CONTROLS), one run folder per weight seed S, `Run.controls("untrained")`

The folder is written under a temporary name and renamed into place, so an interrupted run never
leaves a folder that looks complete, and an existing run is replaced only when asked, and only if it
is a run folder (meta.json's "format" key says so): nothing the toolkit did not write is replaced.
meta.json's "files" records every other file's size and sha256; `load_run` checks the sizes always
and the checksums with `verify=True` (what `show`, `report` and the dashboard use). meta.json itself
is read through its contract (analysis.runs.meta): `run.meta` is a checked, typed RunMeta.
"""

from __future__ import annotations

import json
import os
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

from analysis.errors import RunFolderError, first_line
from analysis.files import check_replaceable, claimed, manifest, recover, replacing, sha256
from analysis.capture.stats import GateStats
from analysis.models.controls import CONTROLS, control_folder
from analysis.runs.meta import RUN_FORMAT, RUN_VERSION, RunMeta, StatsRecord, check_meta, read_document, read_meta, \
    run_format
from analysis.versions import software_versions

TABLES = ("blocks", "channels", "class_means")
EXTRA_TABLES = ("interventions", "attributions", "attribution_blocks", "paper", "channel_interventions",
                "channel_agreement", "cascade", "cascade_flags")


def is_run_folder(path: str | Path) -> bool:
    """Whether `path` is a folder whose meta.json says the toolkit wrote it (in any format)."""
    try:
        return run_format(read_document(Path(path) / "meta.json")) is not None
    except RunFolderError:
        return False


def check_writable(out: str | Path, overwrite: bool = False) -> Path:
    """Refuse early (before a long collection) to write where a run folder cannot be made, or to
    replace anything but a run folder, and that only with `overwrite`."""
    return check_replaceable(out, "a run folder", is_run_folder, overwrite=overwrite, exists=RunFolderError)


def write_run(
    stats: GateStats,
    out: str | Path,
    meta: dict[str, Any],
    tables: dict[str, pd.DataFrame],
    *,
    overwrite: bool = False,
    controls: dict[str, dict[int, tuple[GateStats, dict[str, Any], dict[str, pd.DataFrame]]]] | None = None,
) -> Run:
    """Write the run folder `out` atomically: the statistics, `tables` (each of TABLES) and meta.json,
    and each control's (statistics, meta, tables), kind -> weight seed -> them, as a run folder inside
    it (`control_folder`), in the same write.

    The tables are computed by the caller (`analysis.jobs.save_run` computes every one from `stats`),
    so that this stage stores results without knowing how they are measured.
    """
    out = check_writable(out, overwrite)
    controls = controls or {}
    unknown = [name for name in controls if name not in CONTROLS]
    if unknown:
        raise RunFolderError(f"{', '.join(unknown)} is not a control; controls: {', '.join(CONTROLS)}.")
    folders = {control_folder(kind, seed): parts for kind, by_seed in controls.items() for seed, parts in by_seed.items()}
    for name in TABLES:
        if any(name not in t for t in [tables, *(c[2] for c in folders.values())]):
            raise RunFolderError(f"a run needs the tables {', '.join(TABLES)}; {name} is missing.")
    with claimed(out), replacing(out) as tmp:
        for folder, (control_stats, control_meta, control_tables) in folders.items():
            _write_folder(tmp / folder, control_stats, control_meta, control_tables)
        _write_folder(tmp, stats, meta, tables)
    return load_run(out)


def _write_folder(folder: Path, stats: GateStats, meta: dict[str, Any], tables: dict[str, pd.DataFrame]) -> None:
    """One run folder's files; meta.json last, since its presence marks a complete folder."""
    folder.mkdir(parents=True, exist_ok=True)
    full_meta = {
        "format": RUN_FORMAT,
        "version": RUN_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
        "software": software_versions(),
        **meta,
        "stats": stats.describe(),
        "inputs": stats.inputs.describe() if stats.inputs is not None else None,
    }
    save_file(stats.state_dict(), str(folder / "stats.safetensors"))
    if stats.inputs is not None:
        save_file(stats.inputs.state_dict(), str(folder / "inputs.safetensors"))
    for name in TABLES:
        tables[name].to_parquet(folder / f"{name}.parquet", index=False)
    # meta.json last: its presence marks a complete folder, its "files" what the folder holds
    # (a control's folder inside it included).
    full_meta["files"] = manifest(folder)
    text = json.dumps(full_meta, indent=2, default=str)
    check_meta(folder / "meta.json", json.loads(text))  # what is written opens: checked before it is written
    (folder / "meta.json").write_text(text)


@dataclass
class Run:
    """An opened run folder; tables are read on first access. `meta` is meta.json checked and typed;
    `document` is meta.json as written, kept only to write it back with a new file's record."""

    path: Path
    meta: RunMeta
    document: dict[str, Any] = field(repr=False)
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
                raise RunFolderError(f"{self.path / name}.parquet is damaged or unreadable ({first_line(e)}).") from None
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

    def controls(self, kind: str = "untrained") -> list[Run]:
        """The control runs of `kind` stored inside this run (see analysis.models.controls), in weight
        seed order; [] when the run has none."""
        if kind not in CONTROLS:
            raise RunFolderError(f"{kind!r} is not a control; controls: {', '.join(CONTROLS)}.")
        record = self.meta.controls.get(kind)
        return [load_run(self.path / folder) for folder in record.folders] if record else []

    def has_table(self, name: str) -> bool:
        return (self.path / f"{name}.parquet").is_file()

    def add_table(self, name: str, table: pd.DataFrame) -> None:
        """Store an extra table in the run (replacing an older one), atomically."""
        if name not in EXTRA_TABLES:
            raise RunFolderError(f"{name!r} is not an extra run table; extra tables: {', '.join(EXTRA_TABLES)}.")
        file = f"{name}.parquet"
        files = self.document.setdefault("files", {})
        if files.pop(file, None) is not None:  # never a recorded checksum beside another file's content
            self._write_meta()
        with replacing(self.path / file) as tmp:
            table.to_parquet(tmp, index=False)
            files[file] = {"size": tmp.stat().st_size, "sha256": sha256(tmp)}
        self._write_meta()
        self._cache[name] = table

    def _write_meta(self) -> None:
        """meta.json rewritten from `document`, and `meta` from it (through the same contract)."""
        self.meta = check_meta(self.path / "meta.json", self.document)
        with replacing(self.path / "meta.json") as tmp:
            tmp.write_text(json.dumps(self.document, indent=2, default=str))

    def gate_tensor(self, gate: str, field: str, rows: slice | None = None) -> torch.Tensor:
        """One stored tensor of one gate (e.g. "hist", "top_ids"), read alone from the file; with
        `rows`, only those rows of its first dimension are read.

        Reading a single tensor, or a part of it, keeps the dashboard fast on ImageNet-scale runs,
        whose full statistics are gigabytes (one gate's histogram alone is 160 MB).
        """
        key = f"{gate}/{field}"
        try:
            with safe_open(str(self.path / "stats.safetensors"), framework="pt") as f:
                if key not in f.keys():
                    raise RunFolderError(f"{self.path}/stats.safetensors has no {key}.")
                return f.get_tensor(key) if rows is None else f.get_slice(key)[rows]
        except (OSError, SafetensorError) as e:
            raise RunFolderError(f"{self.path}/stats.safetensors is damaged or unreadable: {e}.") from None

    @cached_property
    def stats(self) -> GateStats:
        """The raw statistics with their squeeze inputs, rebuilt on the CPU on first access."""
        inputs = self._read_stats("inputs", self.meta.inputs) if self.meta.inputs is not None else None
        return self._read_stats("stats", self.meta.stats, inputs)

    def _read_stats(self, name: str, record: StatsRecord, inputs: GateStats | None = None) -> GateStats:
        try:
            return GateStats.from_state(record.description(), load_file(str(self.path / f"{name}.safetensors")), inputs)
        except (OSError, KeyError, ValueError, SafetensorError) as e:
            raise RunFolderError(f"{self.path}/{name}.safetensors does not match meta.json or is damaged: {e}.") from None


def _inside(path: Path, name: str) -> Path:
    """The file `name` of the run folder `path`; RunFolderError, before anything of it is read, if
    it is a link that leads out of the run folder."""
    file = path / name
    # realpath, not Path.resolve: resolve also stats the target, which may be outside
    if not Path(os.path.realpath(file)).is_relative_to(os.path.realpath(path)):
        raise RunFolderError(f"{file} is a link out of its run folder; nothing is read through it.")
    return file


def _check_files(path: Path, meta: RunMeta, verify: bool) -> None:
    """RunFolderError naming the first file recorded in meta.json that leads out of the run,
    is missing, of another size, or (with `verify`) of another sha256."""
    for name, record in meta.files.items():
        file = _inside(path, name)
        if not file.is_file():
            raise RunFolderError(f"{file} is missing; the run is incomplete.")
        if file.stat().st_size != record.size:
            raise RunFolderError(f"{file} is damaged: {file.stat().st_size} bytes, meta.json recorded {record.size}.")
        if verify and sha256(file) != record.sha256:
            raise RunFolderError(f"{file} is damaged: its sha256 differs from the one meta.json recorded.")


def load_run(path: str | Path, verify: bool = False) -> Run:
    """Open a run folder; RunFolderError if it is missing, incomplete, of another version, its
    meta.json breaks the contract (analysis.runs.meta), a file leads out of the run or differs in
    size from meta.json's record (with `verify`, in sha256: reading every byte, which `show`,
    `report`, `ablate` and the dashboard do once per run they open)."""
    path = Path(path)
    recover(path)  # a previous run left aside by a writer that was killed comes back under its name
    if not path.is_dir():
        problem = "it is a file" if path.exists() else "it does not exist"
        raise RunFolderError(f"{path} is not a run folder ({problem}).")
    if not _inside(path, "meta.json").is_file():
        raise RunFolderError(f"{path} is not a complete run folder: meta.json is missing.")
    meta, document = read_meta(path)
    missing = [f for f in ("stats.safetensors", *(f"{t}.parquet" for t in TABLES)) if not (path / f).is_file()]
    if missing:
        raise RunFolderError(f"{path} is incomplete: {', '.join(missing)} missing.")
    _check_files(path, meta, verify)
    return Run(path, meta, document)
