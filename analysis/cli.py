"""The `se-analysis` command: thin subcommands over the library.

Every subcommand returns an exit code; any AnalysisError becomes one sentence on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pandas as pd

from analysis.errors import AnalysisError
from analysis.resources import dashboard_app, shipped_checkpoint

if TYPE_CHECKING:
    from analysis.runs.folder import Run

SHOW_COLUMNS = {
    "block": "block",
    "channels": "C",
    "eta2_mean": "eta2",
    "eta2_null": "null",
    "eta2_ci_low": "ci_low",
    "eta2_ci_high": "ci_high",
    "frac_significant": "sig",
    "mi_bits_mean": "MI_bits",
    "class_corr_mean": "class_r",
    "probe_acc": "probe",
    "probe_chance": "chance",
    "sat_high": ">=0.9",
    "sat_low": "<=0.1",
    "gate_mean": "mean",
}


def format_blocks(run: Run) -> str:
    """The per-block table and the onset line, as printed by `show`, `collect` and `demo`."""
    blocks = run.blocks[[c for c in SHOW_COLUMNS if c in run.blocks]].rename(columns=SHOW_COLUMNS)
    meta = run.meta
    head = (
        f"run {run.path}: model {meta.get('model', '?')}, data {meta.get('data', {}).get('spec', '?')}, "
        f"{meta['stats']['samples']} samples, {meta['stats']['config']['num_classes']} classes, "
        f"{len(blocks)} SE blocks"
    )
    with pd.option_context("display.width", 200, "display.max_rows", 500):
        table = blocks.to_string(index=False, float_format=lambda v: f"{v:.3f}")
    onset = meta["onset"]
    onset_line = (
        f"onset block: {onset['block']}" if onset["block"] else "onset block: none (no block passes the rule)"
    )
    return f"{head}\n{table}\n{onset_line}  [rule: {onset['rule']}]"


def cmd_collect(args: argparse.Namespace) -> int:
    from analysis.jobs import CollectJob, run_collect

    job = CollectJob(**{f.name: getattr(args, f.name) for f in fields(CollectJob) if f.name != "progress"},
                     progress=not args.quiet)
    run = run_collect(job)
    if run is not None:  # under torchrun, only rank 0 writes (and prints) the run
        print(format_blocks(run))
    return 0


DEMO_CHECKPOINT = shipped_checkpoint("fmnist_se20")


def cmd_demo(args: argparse.Namespace) -> int:
    from analysis.jobs import CollectJob, run_collect

    from analysis.presentation.report import write_reports

    job = CollectJob(
        model=str(args.model), data="fashion-mnist:test", out=args.out, batch_size=250,
        overwrite=True, progress=not args.quiet,
    )
    print(format_blocks(run_collect(job)))
    (report,) = write_reports([args.out], args.reports, progress=False)
    print(f"report {report.html}\nexplore: se-analysis dashboard --runs {args.out.parent}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.presentation.report import write_reports

    reports = write_reports(args.runs, args.out, pdf=args.pdf, progress=not args.quiet)
    for report in reports:
        print(f"report {report.html}")
    if len(reports) > 1:
        print(f"index {Path(args.out) / 'index.html'}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    import os

    from analysis.errors import RunFolderError

    if not args.runs.is_dir():
        raise RunFolderError(f"{args.runs} is not a folder of runs; make one with `se-analysis demo`.")
    app = dashboard_app()
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port),
               "--server.address", args.address, "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    env = {**os.environ, "SE_ANALYSIS_RUNS": str(args.runs.resolve())}
    os.execve(sys.executable, command, env)  # become the server, so signals reach it directly


def cmd_show(args: argparse.Namespace) -> int:
    from analysis.runs.folder import load_run

    print(format_blocks(load_run(args.run)))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from analysis.runs.folder import check_writable
    from analysis.models.train import TrainConfig, train

    check_writable(args.out, args.overwrite)
    config = TrainConfig(
        arch=args.arch, se=args.se, reduction=args.reduction, width=args.width, data=args.data,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
        seed=args.seed, snapshots=tuple(int(e) for e in args.snapshots.split(",") if e),
        workers=args.workers, limit=args.limit,
    )
    result = train(config, args.out, device=args.device, progress=not args.quiet)
    print(f"test accuracy {result.test_accuracy:.4f} after {result.epochs} epochs in {result.seconds:.0f} s; "
          f"checkpoint {result.checkpoint}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from analysis.data import make_loader
    from analysis.jobs import open_model_and_data, resolve_device
    from analysis.models.train import evaluate

    device = resolve_device(args.device)
    model, _, source = open_model_and_data(
        args.model, args.data, weights=args.weights, random_init=args.random_init, image_size=args.image_size
    )
    accuracy, loss = evaluate(model.to(device), make_loader(source, args.batch_size, limit=args.limit), device)
    print(f"top-1 accuracy {accuracy:.4f}, loss {loss:.4f} on {args.data} ({args.limit or len(source.dataset)} samples)")
    return 0


def _against_run(args: argparse.Namespace) -> tuple:
    """(run, model, loader, images): the run folder --out with the model and a loader of the data,
    checked to belong to it."""
    from analysis.jobs import resolve_device
    from analysis.data.jpeg import make_image_loader
    from analysis.runs.matching import open_for_run

    device = resolve_device(args.device)
    run, model, source = open_for_run(
        args.out, args.model, args.data, weights=args.weights, random_init=args.random_init, image_size=args.image_size
    )
    loader = make_image_loader(source, args.batch_size, device, workers=args.workers, limit=args.limit)
    return run, model.to(device), loader, min(len(source.dataset), args.limit or len(source.dataset))


def cmd_ablate(args: argparse.Namespace) -> int:
    from analysis.experiments.interventions import ablate, format_interventions

    run, model, loader, images = _against_run(args)
    table = ablate(
        model, loader, run, groups=args.groups, interventions=args.interventions.split(","),
        amp=None if args.amp == "none" else args.amp, resamples=args.resamples, seed=args.seed,
        progress=not args.quiet, total=images,
    )
    run.add_table("interventions", table)
    print(format_interventions(table))
    print(f"table interventions written to {run.path}")
    return 0


def cmd_attribute(args: argparse.Namespace) -> int:
    from analysis.experiments.attributions import attribute

    run, model, loader, images = _against_run(args)
    table, blocks = attribute(
        model, loader, run, method=args.method, target=args.target, steps=args.steps,
        progress=not args.quiet, total=images,
    )
    run.add_table("attributions", table)
    run.add_table("attribution_blocks", blocks)
    with pd.option_context("display.width", 200):
        print(blocks.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"tables attributions, attribution_blocks written to {run.path}")
    return 0


def _against_run_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of commands that apply a model to data against an existing run folder."""
    p.add_argument("--model", required=True, help="the model the run was collected on")
    p.add_argument("--data", required=True, help="data to evaluate on, with the run's classes")
    p.add_argument("--out", required=True, type=Path, help="run folder made by `se-analysis collect` on this model")
    p.add_argument("--weights", type=Path)
    p.add_argument("--random-init", action="store_true")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--limit", type=int, help="use only the first N samples")
    p.add_argument("--image-size", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="se-analysis", description="Where do the gates of an SE network become class-specific?"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("collect", help="collect gate statistics over a data set and write a run folder")
    p.add_argument("--model", required=True, help="se_resnet20 | timm:NAME | torchvision:NAME")
    p.add_argument("--data", required=True, help="fashion-mnist[:train|:test] | imagefolder:PATH | synthetic:k=v,...")
    p.add_argument("--out", required=True, type=Path, help="run folder to write")
    p.add_argument("--weights", type=Path, help="state dict (.pth, .pt) or .safetensors file, loaded without code")
    p.add_argument("--random-init", action="store_true", help="allow a model with random weights")
    p.add_argument("--gates", help="regular expression over module paths naming the gate modules yourself")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--decode", choices=("auto", "cpu", "gpu"), default="auto",
                   help="decode images with PIL in the workers (cpu) or JPEGs with nvjpeg (gpu); "
                        "auto: gpu for an imagefolder on a CUDA device")
    p.add_argument("--limit", type=int, help="use only the first N samples")
    p.add_argument("--image-size", type=int, help="resize/crop images to this size (default: the model's)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile the hooked model")
    p.add_argument("--bins", type=int, default=20, help="histogram bins on [0, 1]")
    p.add_argument("--reservoir", type=int, default=0, help="gate vectors kept per class (0: automatic)")
    p.add_argument("--topk", type=int, default=16, help="top samples kept per channel")
    p.add_argument("--shards", type=int, default=8, help="data shards for jackknife intervals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--onset-min-excess", type=float, default=None, help="onset rule: eta2 above null by this")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="under torchrun: each process collects a shard of the data, rank 0 writes the merged run")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("train", help="train a project SE-ResNet and save a checkpoint with epoch snapshots")
    p.add_argument("--arch", default="se_resnet20")
    p.add_argument("--se", choices=("se", "nosqueeze", "none"), default="se", help="SE block or the paper's ablations")
    p.add_argument("--reduction", type=int, default=4, help="SE reduction ratio r")
    p.add_argument("--width", type=int, help="first-stage width")
    p.add_argument("--data", default="fashion-mnist:train")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--schedule", choices=("cosine", "step"), default="cosine")
    p.add_argument("--snapshots", default="1,2,5,10", help="epochs to keep as snapshots, comma-separated")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--limit", type=int, help="train on the first N samples only")
    p.add_argument("--device", default="auto")
    p.add_argument("--out", required=True, type=Path, help="checkpoint folder")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="top-1 accuracy of a model on a data set")
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--weights", type=Path)
    p.add_argument("--random-init", action="store_true")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--limit", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="collect on the shipped Fashion-MNIST SE-ResNet-20 and print its block table")
    p.add_argument("--model", type=Path, default=DEMO_CHECKPOINT, help="checkpoint to use")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (replaced on each demo)")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="folder for the demo's report")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="write self-contained HTML reports (and PDF) for runs, with an index page")
    p.add_argument("runs", nargs="+", type=Path, help="run folders")
    p.add_argument("--out", type=Path, default=Path("reports"), help="folder for the reports")
    p.add_argument("--pdf", action="store_true", help="also write report.pdf for each run")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("dashboard", help="explore runs in the Streamlit dashboard")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder whose run folders the app may read")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="localhost", help="address to serve on (0.0.0.0 to share it)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("show", help="print the per-block table of a run and its onset block")
    p.add_argument("run", type=Path)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("ablate", help="replace the gates of blocks and groups (ones, mean, class-mean, shuffle) "
                                      "and measure the accuracy change; stored in the run folder")
    _against_run_arguments(p)
    p.add_argument("--groups", default="block,stage,all",
                   help="comma-separated: block (each alone), stage, all, or blocks joined by + (SE_4_2+SE_4_3)")
    p.add_argument("--interventions", default="ones,mean,class-mean,shuffle", help="comma-separated subset")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the images")
    p.add_argument("--seed", type=int, default=0, help="seeds the shuffles and the bootstrap")
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("attribute", help="attribute the class logit to every gate channel with captum, per class; "
                                         "stored in the run folder")
    _against_run_arguments(p)
    p.add_argument("--method", choices=("grad-x-act", "ig"), default="grad-x-act")
    p.add_argument("--target", choices=("pred", "true"), default="pred", help="which class logit to attribute")
    p.add_argument("--steps", type=int, default=32, help="integrated-gradient steps")
    p.set_defaults(func=cmd_attribute)
    return parser


def one_sentence(error: Exception) -> str:
    """The user-facing line of an error; errors raised in DataLoader workers arrive wrapped in a
    traceback, whose last line holds the original message."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else type(error).__name__
    return last.split(": ", 1)[1] if len(lines) > 1 and last.startswith("analysis.errors.") else last


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except AnalysisError as e:
        sys.stderr.write(f"se-analysis: error: {one_sentence(e)}\n")  # one write: ranks' lines never interleave
        return 2
    except KeyboardInterrupt:
        print("se-analysis: interrupted; nothing was written.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
