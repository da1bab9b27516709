"""Commands against a run read the run's own images by default (its data, class selection and
--limit), say so, and say which options made them others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import analysis.data.jpeg
from analysis.cli import main
from analysis.runs.folder import load_run

SYNTH = "synthetic:classes=3,n=48,size=16,channels=1"


@pytest.fixture
def read_ids(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sample ids of every batch the commands' loaders yield, in order."""
    seen: list[int] = []
    loader_of = analysis.data.jpeg.make_image_loader

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        for x, y, ids in loader_of(*args, **kwargs):
            seen.extend(ids.tolist())
            yield x, y, ids

    monkeypatch.setattr(analysis.data.jpeg, "make_image_loader", recording)
    return seen


def test_ablate_and_attribute_read_exactly_the_runs_sample_ids_on_a_limit_run(
    tmp_path: Path, read_ids: list[int], capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "run"
    assert main(["collect", "--model", "se_resnet20", "--random-init", "--data", SYNTH, "--limit", "20",
                 "--out", str(run_dir), "--quiet"]) == 0
    run = load_run(run_dir)
    assert run.meta.data.limit == 20 and run.document["data"]["limit"] == 20
    ids = sorted(run.stats.reservoir(run.stats.gates[0].name)[2].tolist())  # the reservoir keeps every sample here
    assert len(ids) == run.meta.stats.samples == 20
    for command in (["ablate", str(run_dir), "--groups", "all", "--resamples", "5", "--quiet"],
                    ["attribute", str(run_dir), "--quiet"]):
        read_ids.clear()
        capsys.readouterr()
        assert main(command) == 0
        assert sorted(read_ids) == ids, command[0]
        assert f"{command[0]}: 20 images of {SYNTH}: the run's own" in capsys.readouterr().out
    read_ids.clear()
    assert main(["ablate", str(run_dir), "--groups", "all", "--resamples", "5", "--limit", "30", "--quiet"]) == 0
    assert len(read_ids) == 30
    assert f"ablate: 30 images of {SYNTH}, not the run's own 20 (--limit 30 given)." in capsys.readouterr().out
    assert set(load_run(run_dir).table("interventions")["samples"]) == {30}


def test_a_run_written_before_the_data_section_held_the_limit_reads_it_from_its_job(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    assert main(["collect", "--model", "se_resnet20", "--random-init", "--data", SYNTH, "--limit", "20",
                 "--out", str(run_dir), "--quiet"]) == 0
    meta = run_dir / "meta.json"
    document = json.loads(meta.read_text())
    del document["data"]["limit"]
    meta.write_text(json.dumps(document))
    run = load_run(run_dir)
    assert "limit" not in run.document["data"] and run.document["job"]["limit"] == 20
    assert run.meta.data.limit == 20
