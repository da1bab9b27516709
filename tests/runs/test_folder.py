"""Run folders verify themselves and are the only folders a run ever replaces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from analysis.cli import main
from analysis.errors import RunFolderError
from analysis.files import replacing
from analysis.runs.folder import load_run
from analysis.testing.runs import cli_error

SYNTH = "synthetic:classes=3,n=48,size=16,channels=1"


def collect(out, *extra: str) -> list[str]:
    return ["collect", "--model", "se_resnet20", "--random-init", "--data", SYNTH, "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("made") / "run"
    assert main(collect(out)) == 0
    return out


@pytest.fixture
def run_copy(made, tmp_path):
    shutil.copytree(made, tmp_path / "run")
    return tmp_path / "run"


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_meta_records_size_and_sha256_of_every_file(run_copy):
    import hashlib

    files = load_run(run_copy).document["files"]
    on_disk = sorted(str(p.relative_to(run_copy)) for p in run_copy.rglob("*") if p.is_file() and p.name != "meta.json"
                     or p.parent != run_copy and p.name == "meta.json")  # the controls' meta.json inside it too
    assert sorted(files) == on_disk and "untrained/seed_1/meta.json" in files
    for name, record in files.items():
        data = (run_copy / name).read_bytes()
        assert record == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_truncated_table_is_named_always_and_a_flipped_byte_with_verify(run_copy, capsys):
    channels = run_copy / "channels.parquet"
    data = bytearray(channels.read_bytes())
    data[len(data) // 2] ^= 0xFF
    channels.write_bytes(bytes(data))
    load_run(run_copy)  # same size: only the checksum sees it
    with pytest.raises(RunFolderError, match="channels.parquet is damaged: its sha256 differs"):
        load_run(run_copy, verify=True)
    assert "channels.parquet is damaged" in cli_error(capsys, ["show", str(run_copy)])
    channels.write_bytes(bytes(data[:100]))
    with pytest.raises(RunFolderError, match=r"channels.parquet is damaged: 100 bytes"):
        load_run(run_copy)


def test_meta_without_onset_is_a_sentence_naming_the_key(run_copy, capsys, tmp_path):
    meta = json.loads((run_copy / "meta.json").read_text())
    del meta["onset"]
    (run_copy / "meta.json").write_text(json.dumps(meta))
    assert "has no 'onset' entry" in cli_error(capsys, ["show", str(run_copy)])
    assert "has no 'onset' entry" in cli_error(capsys, ["report", str(run_copy), "--out", str(tmp_path / "rep")])
    assert not (tmp_path / "rep").exists()


def test_a_run_of_the_previous_format_is_refused_in_one_sentence(run_copy, capsys):
    """Version 3 stored permutation sums of squares and one histogram per gate as a flat vector;
    version 4 stores permutation sums only and `hist` as [K, C, B + 2]."""
    run = load_run(run_copy)
    gate, config = run.stats.gates[0], run.stats.config
    assert run.gate_tensor(gate.name, "hist").shape == (config.num_classes, gate.channels, config.bins + 2)
    meta = json.loads((run_copy / "meta.json").read_text())
    meta["version"] = 3
    (run_copy / "meta.json").write_text(json.dumps(meta))
    expected = "is a run of format 3, written by an older se-analysis; this one reads format 4: collect it again"
    assert expected in cli_error(capsys, ["show", str(run_copy)])


def test_added_table_is_recorded_and_verified(run_copy):
    import pandas as pd

    run = load_run(run_copy)
    run.add_table("interventions", pd.DataFrame({"a": [1.0, 2.0]}))
    again = load_run(run_copy, verify=True)
    assert again.document["files"]["interventions.parquet"]["size"] == (run_copy / "interventions.parquet").stat().st_size
    (run_copy / "interventions.parquet").write_bytes(b"x")
    with pytest.raises(RunFolderError, match="interventions.parquet is damaged"):
        load_run(run_copy)


def test_overwrite_replaces_a_run_but_never_another_folder(run_copy, tmp_path, capsys):
    thesis = tmp_path / "thesis"
    (thesis / "chapter").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("years of work")
    err = cli_error(capsys, collect(thesis, "--overwrite"))
    assert "not a run folder that se-analysis wrote" in err
    assert (thesis / "thesis.tex").read_text() == "years of work" and (thesis / "chapter").is_dir()
    err = cli_error(capsys, ["demo", "--out", str(thesis), "--quiet"])
    assert "not a run folder" in err and (thesis / "thesis.tex").exists()
    assert main(collect(run_copy, "--overwrite", "--seed", "1")) == 0
    assert load_run(run_copy).document["job"]["seed"] == 1


def test_report_never_writes_over_or_into_a_run_folder(run_copy, capsys):
    holder = run_copy.parent
    err = cli_error(capsys, ["report", str(run_copy), "--out", str(holder)])
    assert "is a run folder" in err
    load_run(run_copy, verify=True)  # still the run, whole
    err = cli_error(capsys, ["report", str(run_copy), "--out", str(run_copy / "reports")])
    assert "inside a run folder" in err and not (run_copy / "reports").exists()
    (holder / "notes.txt").write_text("mine")
    err = cli_error(capsys, ["report", str(run_copy), "--out", str(holder / "notes.txt")])
    assert "is a file" in err and (holder / "notes.txt").read_text() == "mine"


def test_report_replaces_its_own_report_only(run_copy, tmp_path, capsys):
    reports = tmp_path / "reports"
    assert main(["report", str(run_copy), "--out", str(reports), "--quiet"]) == 0
    assert main(["report", str(run_copy), "--out", str(reports), "--quiet"]) == 0  # its own: replaced
    (reports / "run" / "mine.txt").write_text("mine")
    assert "not a report folder" in cli_error(capsys, ["report", str(run_copy), "--out", str(reports), "--quiet"])
    assert (reports / "run" / "mine.txt").read_text() == "mine"


def test_leftovers_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    final = tmp_path / "x"
    dead, alive = dead_pid(), os.getppid()
    for pid in (dead, alive):
        (tmp_path / f".x.tmp-{pid}").mkdir()
        (tmp_path / f".x.tmp-{pid}" / "big").write_text("partial")
    with replacing(final) as tmp:
        tmp.write_text("new")
    assert final.read_text() == "new"
    assert not (tmp_path / f".x.tmp-{dead}").exists()
    assert (tmp_path / f".x.tmp-{alive}").exists()  # a live writer's folder is left alone


def test_a_run_left_aside_by_a_killed_writer_comes_back_under_its_name(run_copy):
    aside = run_copy.parent / f".run.old-{dead_pid()}"
    run_copy.rename(aside)  # killed between moving the old run aside and renaming the new one in
    (run_copy.parent / f".run.tmp-{dead_pid()}").mkdir()
    assert load_run(run_copy, verify=True).document["format"] == "se-analysis run"
    assert sorted(p.name for p in run_copy.parent.iterdir()) == ["run"]
