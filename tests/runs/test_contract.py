"""meta.json's contract (analysis.runs.meta): every hostile or broken field is one sentence naming the
file and the field, found before anything else of the run is read; files outside the run are refused
before any read; runs of older formats are named as such and can be replaced."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys

import pytest
from analysis.testing.runs import cli_error

from analysis.testing.planted import planted_stats, resnet_gates
from analysis.capture.stats import StatsConfig
from analysis.cli import main
from analysis.errors import RunFolderError
from analysis.jobs import save_run
from analysis.runs.folder import is_run_folder, load_run
from analysis.runs.meta import MAX_META_BYTES, MAX_META_DEPTH, RUN_VERSION, RunMeta, StatsRecord, check_meta


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    stats = planted_stats(resnet_gates((4, 4, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 16, 16, 16)), 3, 12,
                          config=StatsConfig(num_classes=3, reservoir=4))
    out = tmp_path_factory.mktemp("contract") / "run"
    save_run(stats, out, {"model": "planted", "data": {"spec": "synthetic:classes=3"}})
    return out


@pytest.fixture
def run_copy(made, tmp_path):
    shutil.copytree(made, tmp_path / "run")
    return tmp_path / "run"


def rewrite(run, change) -> None:
    """meta.json of `run` with `change(meta)` applied (it edits the dict in place)."""
    meta = json.loads((run / "meta.json").read_text())
    change(meta)
    (run / "meta.json").write_text(json.dumps(meta))


def setting(path: str, value):
    """A change that sets the entry at the dotted `path` to `value`."""
    def change(meta):
        *parents, last = path.split(".")
        for key in parents:
            meta = meta[key]
        meta[last] = value
    return change


HOSTILE = [  # (entry, value, what the sentence says after "its 'ENTRY' ")
    ("files", {"blocks.parquet": 5}, "'files['blocks.parquet']' must be an object, not 5"),
    ("files", [], "'files' must be an object, not []"),
    ("stats.class_names", 5, "'stats.class_names' must be a list, not 5"),
    ("stats.class_names", {"a": 1}, "'stats.class_names' must be a list, not {\"a\": 1}"),
    ("stats.class_names", ["a", 7, "c"], "'stats.class_names[1]' must be a string, not 7"),
    ("stats.class_names", ["a", "b"], "'stats' is inconsistent: 2 class names for 3 classes"),
    ("stats.samples", "abc", "'stats.samples' must be a whole number, not \"abc\""),
    ("stats.samples", True, "'stats.samples' must be a whole number, not true"),
    ("stats.samples", 36.0, "'stats.samples' must be a whole number, not 36.0"),
    ("stats.samples", -5, "'stats.samples' must be between 0 and 9007199254740992, not -5"),
    ("stats.samples", 10**308, "'stats.samples' must be between 0 and 9007199254740992, not 1000000000000000000000000000000000000000..."),
    ("stats.config.bins", 1, "'stats.config.bins' must be at least 2, not 1"),
    ("stats.gates", [], "'stats' is inconsistent: the gates must be named, each once"),
    ("onset.block", 3, "'onset.block' must be a string, not 3"),
    ("onset.min_excess", float("nan"), "'onset.min_excess' must be a finite number, not NaN"),
    ("checkpoint", {"test_accuracy": 7}, "'checkpoint.test_accuracy' must be between 0 and 1, not 7"),
    ("job", {"seed": -1}, "'job.seed' must be at least 0, not -1"),
    ("job", {"classes": "abc"}, "'job.classes' must be a list, not \"abc\""),
    ("state_sha256", "x" * 64, "'state_sha256' must be a sha256 in hex, not \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx..."),
    ("warnings", "one", "'warnings' must be a list, not \"one\""),
]


@pytest.mark.parametrize("entry,value,said", HOSTILE, ids=[f"{e}={json.dumps(v)[:20]}" for e, v, _ in HOSTILE])
def test_each_hostile_field_is_one_sentence_naming_the_file_and_the_field(run_copy, capsys, entry, value, said):
    rewrite(run_copy, setting(entry, value))
    with pytest.raises(RunFolderError) as error:
        load_run(run_copy)
    assert str(error.value) == f"{run_copy}/meta.json is damaged: its {said}; collect the run again."
    assert cli_error(capsys, ["show", str(run_copy)]).endswith(str(error.value))


@pytest.mark.parametrize("entry", ["onset", "stats", "stats.samples", "stats.config", "onset.min_excess",
                                  "files.blocks.parquet.sha256", "stats.gates.0.name"])
def test_a_missing_entry_is_named(run_copy, entry):
    def drop(meta):
        *parents, last = entry.replace("blocks.parquet", "blocks/parquet").split(".")
        for key in parents:
            meta = meta[int(key)] if key.isdigit() else meta[key.replace("/", ".")]
        del meta[last]
    rewrite(run_copy, drop)
    shown = {"files.blocks.parquet.sha256": "files['blocks.parquet'].sha256", "stats.gates.0.name": "stats.gates[0].name"}
    with pytest.raises(RunFolderError, match=rf"is damaged: it has no '{shown.get(entry, entry)}' entry".replace("[", r"\[")):
        load_run(run_copy)


def test_a_meta_json_nested_deeper_than_the_contract_is_refused_before_parsing(run_copy, capsys):
    (run_copy / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    assert f"nests deeper than a run's meta.json may ({MAX_META_DEPTH} levels)" in cli_error(capsys, ["show", str(run_copy)])
    brackets_in_strings = json.dumps({"a": "[" * 100, "b": ["]" * 50, "\\\"[[["]})  # strings do not nest
    (run_copy / "meta.json").write_text(brackets_in_strings)
    assert "is not the meta.json of a run" in cli_error(capsys, ["show", str(run_copy)])


def test_an_oversized_list_or_unreadable_meta_json_is_one_sentence(run_copy, capsys):
    (run_copy / "meta.json").write_bytes(b" " * (MAX_META_BYTES + 1))
    assert "is larger than a run's meta.json may be (16 MiB)" in cli_error(capsys, ["show", str(run_copy)])
    (run_copy / "meta.json").write_text("[1, 2]")
    assert "is not the meta.json of a run (it is a JSON list without se-analysis's format mark)" in cli_error(
        capsys, ["show", str(run_copy)])
    (run_copy / "meta.json").write_text('{"format": "se-analysis run", "version": ' + "9" * 5000 + "}")
    assert "meta.json holds a number too long to read." in cli_error(capsys, ["show", str(run_copy)])
    (run_copy / "meta.json").write_bytes(b'{"a": "\xff"}')
    assert "meta.json is not UTF-8 text." in cli_error(capsys, ["show", str(run_copy)])
    (run_copy / "meta.json").write_text('{"a": ')
    assert "meta.json is not valid JSON: Expecting value: line 1 column 7 (char 6)." in cli_error(capsys, ["show", str(run_copy)])


def test_version_is_a_number_and_older_or_newer_formats_say_what_to_do(run_copy, capsys):
    rewrite(run_copy, setting("version", "3"))
    assert cli_error(capsys, ["show", str(run_copy)]).endswith(
        f"{run_copy}/meta.json is damaged: its 'version' must be a whole number, not \"3\"; collect the run again.")
    rewrite(run_copy, setting("version", RUN_VERSION + 1))
    assert f"is a run of format {RUN_VERSION + 1}, written by a newer se-analysis; this one reads format {RUN_VERSION}: " \
        "update se-analysis" in \
        cli_error(capsys, ["show", str(run_copy)])


def test_a_format_1_run_is_named_and_replaced_with_overwrite(run_copy, capsys):
    """Format 1 had no "format" mark: such a run is still the toolkit's own, so --overwrite replaces it."""
    def format_1(meta):
        del meta["format"]
        meta["version"] = 1
    rewrite(run_copy, format_1)
    assert is_run_folder(run_copy)
    assert cli_error(capsys, ["show", str(run_copy)]).endswith(
        f"{run_copy} is a run of format 1, written by an older se-analysis; this one reads format {RUN_VERSION}: "
        "collect it again (--overwrite replaces it).")
    collect = ["collect", "--model", "se_resnet20", "--random-init", "--data", "synthetic:classes=3,n=24,size=16,channels=1",
               "--out", str(run_copy), "--quiet"]
    assert "already exists" in cli_error(capsys, collect)
    assert main([*collect, "--overwrite"]) == 0
    assert load_run(run_copy).meta.stats.samples == 24


def test_something_else_is_never_called_a_run(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "meta.json").write_text('{"version": 1, "stats": {}}')  # no created, no software
    assert not is_run_folder(tmp_path / "other")


def test_show_of_a_file_says_it_is_a_file(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("x")
    assert cli_error(capsys, ["show", str(tmp_path / "x.txt")]).endswith(f"{tmp_path / 'x.txt'} is not a run folder (it is a file).")
    assert cli_error(capsys, ["show", str(tmp_path / "y")]).endswith("is not a run folder (it does not exist).")


class Watched:
    """Every path the process stats or opens while it is on (os.stat and the "open" audit event)."""

    def __init__(self, monkeypatch) -> None:
        self.seen: list[str] = []
        stat = os.stat
        monkeypatch.setattr(os, "stat", lambda path, *a, **k: self.seen.append(os.fspath(path)) or stat(path, *a, **k))
        self.on = True
        sys.addaudithook(self._hook)

    def _hook(self, event, args) -> None:
        if self.on and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            self.seen.append(os.fsdecode(args[0]))

    def touched(self, path) -> bool:
        return any(os.path.realpath(p) == os.path.realpath(path) for p in self.seen)


@pytest.fixture
def outside(run_copy):
    """A file beside the run folder, outside it."""
    (run_copy.parent / "OUTSIDE").write_bytes(b"secret" * 1000)
    return run_copy.parent / "OUTSIDE"


def refused_unread(run, outside, monkeypatch, name: str, says: str) -> None:
    """With meta.json recording `name` with the size and sha256 of `outside`, load_run (verify) says
    `says`, and neither stats nor opens `outside`."""
    record = {"size": outside.stat().st_size, "sha256": hashlib.sha256(outside.read_bytes()).hexdigest()}
    rewrite(run, lambda meta: meta["files"].update({name: record}))
    watched = Watched(monkeypatch)
    try:
        with pytest.raises(RunFolderError, match=says):
            load_run(run, verify=True)
    finally:
        watched.on = False
    assert not watched.touched(outside)


@pytest.mark.parametrize("name", ["OUTSIDE", "../OUTSIDE", "./../OUTSIDE", "sub/../../OUTSIDE", "..\\OUTSIDE", ""])
def test_files_outside_the_run_are_refused_before_any_read(run_copy, outside, monkeypatch, name):
    name = str(outside) if name == "OUTSIDE" else name
    refused_unread(run_copy, outside, monkeypatch, name,
                   r"meta.json is damaged: its 'files' names .*, not a file inside the run folder")


def test_a_link_out_of_the_run_is_refused_before_any_read(run_copy, outside, monkeypatch):
    (run_copy / "inside.bin").symlink_to(outside)
    refused_unread(run_copy, outside, monkeypatch, "inside.bin",
                   r"inside.bin is a link out of its run folder; nothing is read through it")
    (run_copy / "meta.json").rename(run_copy / "real.json")
    (run_copy / "meta.json").symlink_to(run_copy.parent / "elsewhere.json")
    shutil.copy(run_copy / "real.json", run_copy.parent / "elsewhere.json")
    with pytest.raises(RunFolderError, match=r"meta.json is a link out of its run folder"):
        load_run(run_copy)


def test_the_contract_reads_the_written_run_and_round_trips(made):
    run = load_run(made, verify=True)
    assert isinstance(run.meta, RunMeta) and run.meta.stats.samples == 36 and run.meta.model == "planted"
    assert run.meta.stats.class_names == ("class 0", "class 1", "class 2") and run.meta.data.spec == "synthetic:classes=3"
    assert run.meta.onset.detectable == run.document["onset"]["detectable"]
    assert check_meta(made / "meta.json", run.document) == run.meta
    assert StatsRecord.__dataclass_fields__.keys() == run.document["stats"].keys()  # GateStats.describe, all of it
    assert run.stats.samples == 36 and run.stats.class_names == list(run.meta.stats.class_names)


def test_a_run_made_before_the_shape_rule_opens_with_its_onset_as_the_detectable_one(run_copy):
    def before_shape_rule(meta):
        meta["onset"] = {"block": "SE_3_2", "rule": "old rule", "min_excess": 0.1}
    rewrite(run_copy, before_shape_rule)
    onset = load_run(run_copy).meta.onset
    assert (onset.block, onset.detectable, onset.rule_detectable) == (None, "SE_3_2", "old rule")
    assert onset.rule.startswith("not measured")


def test_write_run_refuses_a_meta_that_would_not_open_before_writing(made, tmp_path):
    run = load_run(made)
    with pytest.raises(RunFolderError, match="its 'checkpoint.test_accuracy' must be between 0 and 1, not 1.5"):
        save_run(run.stats, tmp_path / "new", {"model": "planted", "checkpoint": {"test_accuracy": 1.5}})
    assert sorted(p.name for p in tmp_path.iterdir()) == []
