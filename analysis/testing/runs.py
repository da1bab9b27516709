"""The CLI as tests drive it: its one-line error, and small run folders made by it.

    err = cli_error(capsys, ["show", "missing"])    # asserts exit 2 and one line; returns it
    measure_run(tmp_path / "run")                   # collect, ablate and attribute on a tiny model
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from analysis.cli import main as cli_main


def cli_error(capsys: Any, argv: list[str]) -> str:
    """The one-line error of a CLI call that must fail with exit status 2 (`capsys`: pytest's fixture)."""
    capsys.readouterr()
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("se-analysis: error: ") and "\n" not in err and "Traceback" not in err
    return err


def measure_run(out: Path) -> None:
    """A run with interventions and attributions, made by the CLI on a small random-weight model."""
    common = ["--model", "se_resnet20", "--random-init", "--data", "synthetic:classes=3,n=48,size=16,channels=1",
              "--out", str(out), "--quiet"]
    assert cli_main(["collect", *common]) == 0
    assert cli_main(["ablate", *common, "--groups", "block,all", "--resamples", "50"]) == 0
    assert cli_main(["attribute", *common]) == 0


NEW_COLUMNS = ("eps2_mean", "class_mod", "eta2_perm", "perm_p", "eta2_untrained", "shape_sep_untrained",
               "probe_untrained", "eta2_z", "probe_z", "profile_sep", "shape_sep", "probe_perm", "probe_selectivity",
               "probe_per_class", "probe_ncm")  # issue 14's block columns (api14.md)


def with_new_columns(run_path: Path, out: Path) -> None:
    """A copy of a run as issue 14 writes it: the new block columns (known values: column i of block d
    is d + i / 100), both onsets and a warning in meta.json."""
    from analysis.runs.folder import load_run, write_run

    run = load_run(run_path)
    blocks = run.blocks.copy()
    for i, column in enumerate(NEW_COLUMNS):
        blocks[column] = blocks["depth"] + i / 100
    meta = {k: v for k, v in run.document.items() if k not in ("version", "created", "command", "software", "stats")}
    old = {k: v for k, v in meta["onset"].items() if k != "notions"}  # issue 14's runs name no notions
    meta["onset"] = {**old, "block": "SE_4_2", "detectable": "SE_2_3", "rule": "shape rule", "rule_detectable": "old rule"}
    meta["warnings"] = ["class 4 has only 3 samples"]
    write_run(run.stats, out, meta, {"blocks": blocks, "channels": run.channels, "class_means": run.class_means})
