"""meta.json as a typed contract: every field the toolkit reads, declared once, checked once.

    meta, document = read_meta(Path("runs/x"))     # RunFolderError naming the file and the field
    meta.stats.samples, meta.onset.detectable, meta.job.seed if meta.job else 0

Each record below is a frozen dataclass whose type hints are the contract: `str`, `int`, `float`,
`bool`, `X | None`, `tuple[X, ...]` (a JSON list), `dict[str, X]` (a JSON object), a nested record,
and `Annotated[X, check]` with a `Range` (options.py) or a check of this module (`Matches`,
`InsideRun`). `read_meta` bounds the file's size and nesting depth before parsing it, checks the
format mark and version, and builds the records from their hints (`parse`); a field a record does
not declare is kept in the document (written back unchanged) but never read. A record may upgrade
an older shape of its entry (`_older`), so that runs of the current format version written before
a field existed still open.

To read a field: through `run.meta` (a RunMeta), never through the JSON document. To add one:
declare it in its record, with a default if older runs lack it; the check comes from its type.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, NamedTuple

import numpy as np

from analysis.capture.config import StatsConfig
from analysis.capture.gates import Gate
from analysis.data.selection import PER_CLASS
from analysis.data.source import IMAGE_SIZE
from analysis.errors import AnalysisError, RunFolderError, first_line
from analysis.options import Range

RUN_VERSION = 4  # 2: shifted moments, per-channel histogram ranges, permutation tables, squeeze inputs;
# 3: per-channel histogram edges equiprobable on the first batch (`{gate}/edges`, was edge_lo/edge_hi);
# 4: the fields of capture.fields (permutation sums only, float32; hist [K, C, B+2]; problem counters per
# channel; squeeze inputs without null, histogram, top-k and shards; calibration by sample id)
RUN_FORMAT = "se-analysis run"  # meta.json's mark of a folder the toolkit wrote (format 1 had none)
MAX_META_BYTES = 16 << 20  # an ImageNet-21k run's meta.json is a few MB
MAX_META_DEPTH = 32  # nesting of JSON objects and lists; the toolkit writes 5 levels
MAX_SAMPLES = 1 << 53  # the largest count a JSON reader in any language keeps exactly
SHAPE_NOT_MEASURED = "not measured (run made before the shape rule)"
_SHOWN = 40  # characters of a bad value quoted in a message


class Matches(NamedTuple):
    """A string check: the whole string matches `pattern`, which `meaning` says in words."""

    pattern: str
    meaning: str

    def problem(self, value: str) -> str | None:
        return None if re.fullmatch(self.pattern, value) else f"must be {self.meaning}, not {_shown(value)}"


class InsideRun(NamedTuple):
    """A file name relative to the run folder that stays inside it (no absolute path, no `..`)."""

    def problem(self, value: str) -> str | None:
        path = PurePosixPath(value)
        if not value or "\\" in value or "\0" in value or path.is_absolute() or ".." in path.parts or value != str(path):
            return f"names {_shown(value)}, not a file inside the run folder"
        return None


Sha256 = Annotated[str, Matches("[0-9a-f]{64}", "a sha256 in hex")]


@dataclass(frozen=True)
class FileRecord:
    """One entry of meta.json "files": a file of the run with the size and sha256 it was written with."""

    size: Annotated[int, Range(0)]
    sha256: Sha256


@dataclass(frozen=True)
class StatsRecord:
    """meta.json "stats" (and "inputs"): what rebuilds a GateStats with its tensors (GateStats.describe)."""

    config: StatsConfig
    gates: tuple[Gate, ...]
    class_names: tuple[str, ...]
    samples: Annotated[int, Range(0, MAX_SAMPLES)]

    def __post_init__(self) -> None:
        if len(self.class_names) != self.config.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.config.num_classes} classes")
        names = [g.name for g in self.gates]
        if not names or len(set(names)) != len(names):
            raise ValueError("the gates must be named, each once")

    def description(self) -> dict[str, Any]:
        """The description GateStats.from_state takes (as GateStats.describe writes it)."""
        return {"config": dataclasses.asdict(self.config), "gates": [dataclasses.asdict(g) for g in self.gates],
                "class_names": list(self.class_names), "samples": self.samples}


Share = Annotated[float, Range(0, 1)]


@dataclass(frozen=True)
class NotionRecord:
    """One notion of meta.json "onset.notions" (analysis.measures.notions): its onset block, how
    sure it is, what it was held against, and its rule in words."""

    status: Annotated[str, Matches("found|none|undetermined", "found, none or undetermined")]
    block: str | None = None  # None: status none (no block holds to the end) or undetermined
    reason: str | None = None  # why it is undetermined, e.g. "no untrained control"
    certainty: Share | None = None  # share of the draws whose own onset is `block` (None: no draws)
    shares: dict[str, Share] = field(default_factory=dict)  # block (or "none") -> share of the draws
    draws: Annotated[int, Range(0)] = 0  # resamples x control seeds (detectable: resamples)
    resamples: Annotated[int, Range(0)] = 0
    control_seeds: tuple[int, ...] = ()
    statistic: str = "?"  # the blocks-table column the rule reads
    control: str = "?"  # "untrained" or "chance"
    null: str = "?"  # the blocks-table column of the null the statistic must exceed
    value: float | None = None  # the statistic at `block`
    null_value: float | None = None  # the null at `block`
    band: tuple[float, ...] | None = None  # the untrained band [smallest, largest] at `block`
    meaning: str = ""
    rule: str = "?"
    certainty_rule: str = ""

    def __post_init__(self) -> None:
        if (self.block is None) != (self.status != "found"):
            raise ValueError(f"status {self.status} with block {self.block}")


@dataclass(frozen=True)
class OnsetRecord:
    """meta.json "onset": both onset blocks with their rules (analysis.measures.tables.run_tables)."""

    block: str | None  # the shape onset; None: no block passes, undetermined (see `notions`) or not measured
    detectable: str | None  # the detectable onset; None: no block passes
    min_excess: float  # the detectable rule's effect size (also what `ablate` calls class-agnostic)
    rule: str = "?"
    rule_detectable: str = "?"
    notions: dict[str, NotionRecord] = field(default_factory=dict)  # issue 23 on: detectable, magnitude, shape

    @staticmethod
    def _older(entry: dict[str, Any]) -> dict[str, Any]:
        """Runs made before the shape rule hold the detectable onset and its rule under "block", "rule"."""
        if "block" not in entry or "detectable" in entry:
            return entry
        return {**entry, "block": None, "rule": SHAPE_NOT_MEASURED, "detectable": entry["block"],
                "rule_detectable": entry.get("rule", "?")}


@dataclass(frozen=True)
class CheckpointRecord:
    """meta.json "checkpoint": the checkpoint's own record (analysis.models.checkpoint)."""

    test_accuracy: Annotated[float | None, Range(0, 1)] = None
    epoch: Annotated[int | None, Range(0)] = None  # of an epoch snapshot: Compare orders a training's runs by it


@dataclass(frozen=True)
class PretrainedRecord:
    """meta.json "pretrained": a library's pretrained weights (analysis.models.pretrained)."""

    spec: str


@dataclass(frozen=True)
class DataRecord:
    """meta.json "data": the data source (DataSource.describe) and the run's --limit (None: every
    sample of the source), so that later commands read the same images."""

    spec: str | None = None
    limit: Annotated[int | None, Range(1)] = None


@dataclass(frozen=True)
class JobRecord:
    """meta.json "job": the collection's options (analysis.jobs.CollectJob) that later commands reuse."""

    gates: str | None = None
    weights: str | None = None
    random_init: bool = False
    pretrained: bool = False
    image_size: Annotated[int | None, IMAGE_SIZE] = None
    seed: Annotated[int, Range(0)] = 0
    classes: tuple[str, ...] | None = None
    per_class: Annotated[int | None, PER_CLASS] = None


@dataclass(frozen=True)
class ControlsRecord:
    """One kind of control in meta.json "controls" (analysis.models.controls): a run folder per seed."""

    seeds: tuple[int, ...]
    folders: tuple[Annotated[str, InsideRun()], ...]
    samples: tuple[Annotated[int, Range(0, MAX_SAMPLES)], ...] = ()

    def __post_init__(self) -> None:
        if len(self.seeds) != len(self.folders):
            raise ValueError(f"{len(self.seeds)} seeds for {len(self.folders)} folders")


@dataclass(frozen=True)
class RunMeta:
    """A run's meta.json, checked: the fields the toolkit reads (see the module docstring)."""

    stats: StatsRecord
    onset: OnsetRecord
    inputs: StatsRecord | None = None  # the squeezed inputs' statistics, where collected
    files: dict[Annotated[str, InsideRun()], FileRecord] = field(default_factory=dict)
    model: str | None = None
    weights: str | None = None
    weights_sha256: Sha256 | None = None
    state_sha256: Sha256 | None = None
    checkpoint: CheckpointRecord | None = None
    pretrained: PretrainedRecord | None = None
    data: DataRecord | None = None
    job: JobRecord | None = None
    controls: dict[str, ControlsRecord] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    created: str = "?"
    software: dict[str, str | None] = field(default_factory=dict)

    @staticmethod
    def _older(entry: dict[str, Any]) -> dict[str, Any]:
        """Runs before issue 23 list the kinds of their controls, each one run folder named after it
        and drawn from the job's seed; runs made before the data section recorded --limit hold it in
        their job only."""
        data, job = entry.get("data"), entry.get("job")
        if isinstance(data, dict) and "limit" not in data and isinstance(job, dict) and job.get("limit") is not None:
            entry = {**entry, "data": {**data, "limit": job["limit"]}}
        old = entry.get("controls")
        if not isinstance(old, list):
            return entry
        seed = job.get("seed", 0) if isinstance(job, dict) else 0
        return {**entry, "controls": {kind: {"seeds": [seed], "folders": [kind]} for kind in old}}


class _Invalid(Exception):
    """A field of the document that breaks the contract: where it is, and what is wrong, in words."""

    def __init__(self, where: str, problem: str, missing: bool = False) -> None:
        super().__init__(where, problem)
        self.where, self.problem, self.missing = where, problem, missing


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}..."


_KINDS = {bool: "true or false", int: "a whole number", float: "a finite number", str: "a string"}


def _scalar(kind: type, value: Any, where: str) -> Any:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok:
        raise _Invalid(where, f"must be {_KINDS[kind]}, not {_shown(value)}")
    return float(value) if kind is float else value


def parse(hint: Any, value: Any, where: str) -> Any:  # long: one branch per kind of type hint
    """`value` (parsed JSON) as `hint` says: a record built, lists as tuples, checks applied.
    Raises _Invalid naming `where` (e.g. "stats.gates[2].channels")."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        found = parse(args[0], value, where)
        for check in hint.__metadata__ if found is not None else ():
            if isinstance(check, Range):
                problem = None if check.contains(found) else f"must be {check.wanted}, not {_shown(value)}"
            else:
                problem = check.problem(found)
            if problem:
                raise _Invalid(where, problem)
        return found
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (kind,) = [a for a in args if a is not type(None)]
        return parse(kind, value, where)
    if dataclasses.is_dataclass(hint):
        return _record(hint, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise _Invalid(where, f"must be a list, not {_shown(value)}")
        return tuple(parse(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise _Invalid(where, f"must be an object, not {_shown(value)}")
        return {parse(args[0], key, where): parse(args[1], item, f"{where}[{key!r}]")
                for key, item in value.items()}
    if hint in _KINDS:
        return _scalar(hint, value, where)
    raise TypeError(f"meta.json's contract has no rule for {hint!r}")


def _record(cls: type, value: Any, where: str) -> Any:
    """The record `cls` from a JSON object: each declared field parsed, defaults where absent."""
    if not isinstance(value, dict):
        raise _Invalid(where, f"must be an object, not {_shown(value)}")
    value = getattr(cls, "_older", lambda entry: entry)(value)
    hints = typing.get_type_hints(cls, include_extras=True)
    found = {}
    for f in dataclasses.fields(cls):
        inner = f"{where}.{f.name}" if where else f.name
        if f.name in value:
            found[f.name] = parse(hints[f.name], value[f.name], inner)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _Invalid(inner, "", missing=True)
    try:
        return cls(**found)
    except (AnalysisError, ValueError) as e:
        raise _Invalid(where, f"is inconsistent: {first_line(e).rstrip('.')}") from None


def _depth(text: str) -> int:
    """The deepest nesting of JSON objects and lists in `text`, without parsing it."""
    brackets = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)
    codes = np.frombuffer(brackets.encode(), np.uint8)
    steps = np.isin(codes, (91, 123)).astype(np.int64) - np.isin(codes, (93, 125))  # [{ minus ]}
    return int(np.cumsum(steps).max(initial=0))


def read_document(file: Path) -> Any:
    """The parsed JSON of `file`, its size and depth bounded first; RunFolderError in one sentence."""
    try:
        with open(file, "rb") as f:
            data = f.read(MAX_META_BYTES + 1)
        if len(data) > MAX_META_BYTES:
            raise RunFolderError(f"{file} is larger than a run's meta.json may be ({MAX_META_BYTES >> 20} MiB).")
        text = data.decode()
        if _depth(text) > MAX_META_DEPTH:
            raise RunFolderError(f"{file} nests deeper than a run's meta.json may ({MAX_META_DEPTH} levels).")
        return json.loads(text)
    except OSError as e:
        raise RunFolderError(f"{file} cannot be read: {e.strerror or type(e).__name__}.") from None
    except UnicodeDecodeError:
        raise RunFolderError(f"{file} is not UTF-8 text.") from None
    except json.JSONDecodeError as e:
        raise RunFolderError(f"{file} is not valid JSON: {e}.") from None
    except ValueError:  # Python reads no integer of more than sys.get_int_max_str_digits() digits
        raise RunFolderError(f"{file} holds a number too long to read.") from None


def run_format(document: Any) -> int | None:
    """The format version of a meta.json document the toolkit wrote: its "version" where it carries
    the format mark, 1 for the unmarked meta.json of format 1; None for anything else."""
    if not isinstance(document, dict):
        return None
    version = document.get("version")
    if document.get("format") == RUN_FORMAT:
        return version if isinstance(version, int) and not isinstance(version, bool) else -1
    old = "format" not in document and version == 1 and {"created", "software", "stats"} <= document.keys()
    return 1 if old else None


def read_meta(folder: Path) -> tuple[RunMeta, dict[str, Any]]:
    """(the checked RunMeta, the JSON document as written) of the run folder `folder`."""
    file = folder / "meta.json"
    document = read_document(file)
    version = run_format(document)
    if version is None:
        kind = "an object" if isinstance(document, dict) else f"a JSON {type(document).__name__}"
        raise RunFolderError(f"{file} is not the meta.json of a run (it is {kind} without se-analysis's format mark).")
    if version == -1:
        raise _damaged(file, _Invalid("version", f"must be a whole number, not {_shown(document.get('version'))}"))
    if version > RUN_VERSION:
        raise RunFolderError(f"{folder} is a run of format {version}, written by a newer se-analysis; this one reads "
                             f"format {RUN_VERSION}: update se-analysis to open it.")
    if version < RUN_VERSION:
        raise RunFolderError(f"{folder} is a run of format {version}, written by an older se-analysis; this one reads "
                             f"format {RUN_VERSION}: collect it again (--overwrite replaces it).")
    return check_meta(file, document), document


def check_meta(file: Path, document: dict[str, Any]) -> RunMeta:
    """RunMeta from the JSON document of `file`; RunFolderError naming the file and the field."""
    try:
        return _record(RunMeta, document, "")
    except _Invalid as e:
        raise _damaged(file, e) from None


def _damaged(file: Path, e: _Invalid) -> RunFolderError:
    problem = f"it has no '{e.where}' entry" if e.missing else f"its '{e.where}' {e.problem}"
    return RunFolderError(f"{file} is damaged: {problem}; collect the run again.")
