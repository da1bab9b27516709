"""Measure interventions and attributions of the shipped checkpoint; write checkpoints/ABLATION.md
and the accuracy table of checkpoints/MODEL_CARD.md.

    python bench/ablation_card.py                         # collect, ablate, attribute, then write
    python bench/ablation_card.py --steps none            # only rewrite the page from the run
    python bench/ablation_card.py --tiny --run R --out P --card C   # 64 images, one group (smoke test)

Runs the `se-analysis` commands listed on the page, as a user would, and times each. Every number
of the page comes from the run folder's tables and the recorded timings: nothing is typed by hand.
Timings are kept in RUN.timings.json beside the run, so the page can be rewritten without
measuring again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from analysis import load_run
from analysis.experiments.interventions import INTERVENTIONS, REMOVABLE_DROP
from analysis.measures.saturation import SATURATED_SHARE

ROOT = Path(__file__).resolve().parent.parent
MODEL, DATA = "checkpoints/fmnist_se20", "fashion-mnist:test"


TINY = ["--limit", "64"]  # --tiny: the first 64 images, every group of blocks at once, few resamples


def commands(run: Path, tiny: bool = False) -> dict[str, list[str]]:
    common = ["--model", MODEL, "--data", DATA, "--out", str(run), "--quiet", *(TINY if tiny else [])]
    return {
        "collect": ["se-analysis", "collect", *common, "--batch-size", "500", "--overwrite"],
        "ablate": ["se-analysis", "ablate", *common, "--batch-size", "500",
                   *(["--groups", "all", "--resamples", "20"] if tiny else [])],
        "attribute": ["se-analysis", "attribute", *common, "--batch-size", "250"],
    }


def hardware() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()}-core {platform.machine()} CPU ({cpu}), {torch.get_num_threads()} torch threads, fp32"


def measure(run: Path, steps: list[str], timings_file: Path, tiny: bool) -> None:
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    binary = Path(sys.executable).parent
    for step in steps:
        command = commands(run, tiny)[step]
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        subprocess.run([str(binary / command[0]), *command[1:]], cwd=ROOT, check=True)
        timings[step] = {
            "seconds": round(time.perf_counter() - start, 1), "load_before": load_before,
            "load_after": os.getloadavg()[0], "hardware": hardware(),
        }
        timings_file.write_text(json.dumps(timings, indent=2))


def markdown(table: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown needs tabulate, which the project does not install)."""
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def change_cell(row: pd.Series) -> str:
    """Accuracy change in points with its interval; a check mark where measured removable."""
    cell = f"{100 * row.acc_change:+.2f} [{100 * row.acc_change_ci_low:+.2f}, {100 * row.acc_change_ci_high:+.2f}]"
    return cell + (" ✓" if row.measured_removable else "")


def pivot(table: pd.DataFrame, value: str) -> pd.DataFrame:
    """One row per group, one column per intervention, in the table's order."""
    cells = table.assign(cell=table.apply(change_cell, axis=1) if value == "acc" else table["loss_change"].map("{:+.4f}".format))
    wide = cells.pivot(index="group", columns="intervention", values="cell")
    order = list(dict.fromkeys(table["group"]))
    return wide.loc[order, [i for i in INTERVENTIONS if i in wide.columns]]


def accuracy_table(run) -> str:
    """The accuracy-change table (markdown) of the run's interventions, with the predictions."""
    iv = run.table("interventions")
    per_group = iv.drop_duplicates("group").set_index("group")
    acc = pivot(iv, "acc")
    acc.insert(0, "predicted removable", per_group.loc[acc.index, "predicted_removable"].map({True: "yes", False: "no"}))
    acc.insert(0, "eta2_excess", per_group["eta2_excess"].map(lambda v: "" if pd.isna(v) else f"{v:.3f}"))
    acc.insert(0, "sat_high", per_group["sat_high"].map(lambda v: "" if pd.isna(v) else f"{v:.3f}"))
    return markdown(acc.reset_index())


def replace_between_markers(path: Path, name: str, text: str) -> None:
    """Replace what lies between `<!-- name:start -->` and `<!-- name:end -->` in `path`."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    page = path.read_text()
    if start not in page or end not in page:
        raise SystemExit(f"{path} has no {start} ... {end} section to fill")
    head, rest = page.split(start, 1)
    path.write_text(f"{head}{start}\n{text}\n{end}{rest.split(end, 1)[1]}")


def page(run_path: Path, timings: dict, tiny: bool = False) -> str:
    run = load_run(run_path)
    iv = run.table("interventions")
    blocks = run.table("attribution_blocks")
    first = iv.iloc[0]
    per_group = iv.drop_duplicates("group").set_index("group")
    single = per_group["kind"] == "block"
    loss = pivot(iv, "loss").reset_index()
    attr = blocks.assign(
        share_abs_attr=blocks["share_abs_attr"].map("{:.1%}".format),
        **{c: blocks[c].map("{:.4g}".format) for c in ("mean_attr", "mean_abs_attr", "eta2_mean", "eta2_weighted", "attr_eta2_corr")},
    )[["block", "mean_attr", "mean_abs_attr", "share_abs_attr", "eta2_mean", "eta2_weighted", "attr_eta2_corr"]]
    predicted, measured = per_group["predicted_removable"][single], iv[iv["kind"] == "block"]
    timing_lines = "\n".join(
        f"| `{step}` | {t['seconds']:.0f} s | {t['load_before']:.1f} / {t['load_after']:.1f} |" for step, t in timings.items()
    )
    command_lines = "\n".join(" ".join(c) for c in commands(run_path, tiny).values())
    hw = next(iter(timings.values()))["hardware"] if timings else "unknown"
    return f"""# Interventions and attributions: fmnist_se20

Generated by `bench/ablation_card.py` from the run folder's tables; no number is typed by hand.

Model `{MODEL}` (SE-ResNet-20, 9 SE blocks), evaluated on {DATA} ({first['samples']} images).
Plain model: top-1 {100 * first['acc_base']:.2f}%, mean cross-entropy {first['loss_base']:.4f}.

    {command_lines.replace(chr(10), chr(10) + '    ')}

Hardware: {hw}. The load average before and after each command is shown: above the core count,
other work shared the machine and the wall time is an upper bound.

| command | wall time | load before / after |
|---|---|---|
{timing_lines}

## Accuracy change when a block's gates are replaced

Top-1 change in percentage points against the plain model, with a paired bootstrap 95% interval
over images (1000 resamples, seed 0). ✓ = measured removable: the drop is below
{100 * REMOVABLE_DROP:.0f} point with 95% confidence. *predicted removable* (from the run's blocks
table): saturated (`sat_high` >= {SATURATED_SHARE}) or class-agnostic (`eta2_excess` <= the onset rule's
{run.meta.onset.min_excess}); for a group, every block. ones: s = 1 (SE removed); mean: the
data set's mean gate; class-mean: the true class's mean gate (an oracle); shuffle: the gates of
another image of the batch.

{accuracy_table(run)}

Blocks predicted removable: {int(predicted.sum())} of {len(predicted)}; single-block interventions
measured removable: {int(measured['measured_removable'].sum())} of {len(measured)}.

## Loss change

Change of the mean cross-entropy (same rows).

{markdown(loss)}

## Attributions (gradient x activation, predicted class)

Per block: mean over images of the block's attribution summed over channels (`mean_attr`) and of
its channels' absolute attributions (`mean_abs_attr`), its share of all blocks' absolute
attribution, the mean channel eta2 from the run, the same weighted by mean |attribution|
(`eta2_weighted` above `eta2_mean` would mean that the channels the decision uses are the more
class-specific ones), and the Spearman correlation over channels of eta2 and mean |attribution|.

{markdown(attr)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=Path("/tmp/fm_run"))
    parser.add_argument("--steps", default="collect,ablate,attribute", help="commands to run, or none")
    parser.add_argument("--out", type=Path, default=ROOT / "checkpoints" / "ABLATION.md")
    parser.add_argument("--card", type=Path, default=ROOT / "checkpoints" / "MODEL_CARD.md",
                        help="model card whose <!-- ablation:start/end --> section gets the accuracy table")
    parser.add_argument("--tiny", action="store_true", help="64 images, all blocks as one group: does it run")
    args = parser.parse_args()
    timings_file = args.run.with_name(args.run.name + ".timings.json")
    steps = [s for s in args.steps.split(",") if s and s != "none"]
    measure(args.run, steps, timings_file, args.tiny)
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {}
    args.out.write_text(page(args.run, timings, args.tiny))
    replace_between_markers(args.card, "ablation", accuracy_table(load_run(args.run)))
    print(f"wrote {args.out} and the ablation table of {args.card}")


if __name__ == "__main__":
    main()
