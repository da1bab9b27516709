# long: one short function and one parser paragraph per subcommand, and the help texts of all their options
"""The `se-analysis` command: thin subcommands over the library.

Every subcommand returns an exit code; any AnalysisError becomes one sentence on stderr and exit 2,
any other error one line naming it and exit 1 (SE_ANALYSIS_TRACEBACK=1 shows its traceback); output
piped into a command that stops reading (`| head`) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pandas as pd

from analysis.errors import AnalysisError, OptionError, first_line
from analysis.options import Range, add_options, check_values, option_values
from analysis.resources import dashboard_app, shipped_checkpoint

if TYPE_CHECKING:
    from analysis.runs.folder import Run

RUN_TIME = ("progress", "total")  # keyword parameters the command sets itself, not options
PORT = Range(1, 65535)
SHOW_COLUMNS = {  # block-table column: its short heading in `show`; controls beside their measure
    "block": "block",
    "channels": "C",
    "eta2_mean": "eta2",
    "eta2_null": "null",
    "eta2_perm": "perm",
    "eta2_untrained": "untr",
    "eta2_z": "z",
    "eta2_ci_low": "ci_low",
    "eta2_ci_high": "ci_high",
    "shape_sep": "shape",
    "shape_sep_untrained": "shape_untr",
    "class_mod": "mod",
    "frac_significant": "sig",
    "mi_bits_mean": "MI_bits",
    "probe_acc": "probe",
    "probe_perm": "probe_perm",
    "probe_untrained": "probe_untr",
    "probe_z": "probe_z",
    "probe_chance": "chance",
    "sat_high": ">=0.9",
    "sat_low": "<=0.1",
}


def format_blocks(run: Run) -> str:
    """The per-block table (the columns of SHOW_COLUMNS this run has) and both onsets, each with its
    rule and what it means, as printed by `show`, `collect` and `demo`."""
    from analysis.presentation import views

    blocks = run.blocks[views.present(run, tuple(SHOW_COLUMNS))].rename(columns=SHOW_COLUMNS)
    s = views.summary(run)
    head = (
        f"run {run.path}: model {s['model']}, data {s['data']}, {s['samples']} samples, {s['classes']} classes, "
        f"{len(blocks)} SE blocks"
    )
    with pd.option_context("display.width", 250, "display.max_rows", 500, "display.max_columns", 50):
        table = blocks.to_string(index=False, float_format=lambda v: f"{v:.3f}")
    notions = run.meta.onset.notions
    onsets = notion_lines(notions) if notions else [
        f"{o['label']}: {o['block'] or 'none'}, {o['meaning']}  [rule: {o['rule']}]" for o in views.onsets(run)]
    return "\n".join([head, table, *onsets, *warning_lines(run)])


def warning_lines(run: Run) -> list[str]:
    """The run's own warnings (too few images and the like), one line each, as every command that
    reads or writes a run prints them."""
    return [f"warning: {w}" for w in run.meta.warnings]


def notion_lines(notions: dict) -> list[str]:
    """One line per notion of meta.json's onset record (runs.meta.NotionRecord): its onset block
    with its certainty, the statistic there beside its untrained band and its null (the rules:
    meta.json and the README)."""
    lines = []
    for name, n in notions.items():
        if n.status == "undetermined":
            lines.append(f"onset ({name}): undetermined ({n.reason})")
            continue
        draws = f"{n.draws} draws" if n.draws else "no resamples"
        sure = f"certainty {n.certainty:.2f} of {draws}" if n.certainty is not None else draws
        if n.block is None:
            lines.append(f"onset ({name}): none, no block from which {n.statistic} stays above its control ({sure})")
            continue
        band = f", untrained {n.band[0]:.3g}-{n.band[1]:.3g}" if n.band else ""
        null = "chance" if n.control == "chance" else "null 95%"
        lines.append(f"onset ({name}): {n.block} ({sure}): {n.statistic} {n.value:.3g}{band}, {null} {n.null_value:.3g}")
    return lines


def cmd_collect(args: argparse.Namespace) -> int:
    from analysis.jobs import CollectJob, run_collect

    job = CollectJob(**option_values(args, CollectJob, skip=("progress",)), progress=not args.quiet)
    run = run_collect(job)
    if run is not None:  # under torchrun, only rank 0 writes (and prints) the run
        print(format_blocks(run))
    return 0


DEMO_CHECKPOINT = shipped_checkpoint("fmnist_se20")
DEMO_CONTROL_LIMIT = 2000  # images per untrained control in the demo (README: what it costs and why)


def cmd_demo(args: argparse.Namespace) -> int:
    from analysis.jobs import CollectJob, run_collect

    from analysis.presentation.report import write_reports

    job = CollectJob(
        model=str(args.model), data="fashion-mnist:test", out=args.out, batch_size=250, limit=args.limit,
        overwrite=True, progress=not args.quiet, control=args.control, control_seeds=args.control_seeds,
        control_limit=args.control_limit,
    )
    print(format_blocks(run_collect(job)))
    (report,) = write_reports([args.out], args.reports, progress=False)
    print(f"report {report.html}\nexplore: se-analysis dashboard --runs {args.out.parent}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from analysis.presentation.report import write_reports

    reports = write_reports(args.runs, args.out, pdf=args.pdf, progress=not args.quiet)
    for report in reports:
        print("\n".join([f"report {report.html}", *warning_lines(report.run)]))
    if len(reports) > 1:
        print(f"index {Path(args.out) / 'index.html'}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    import os

    from analysis.errors import RunFolderError

    PORT.check("port", args.port)
    if not args.runs.is_dir():
        raise RunFolderError(f"{args.runs} is not a folder of runs; make one with `se-analysis demo`.")
    app = dashboard_app()
    command = [sys.executable, "-m", "streamlit", "run", str(app), "--server.port", str(args.port),
               "--server.address", args.address, "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--client.toolbarMode", "viewer"]  # a viewer's menu: no Deploy button
    env = {**os.environ, "SE_ANALYSIS_RUNS": str(args.runs.resolve())}
    os.execve(sys.executable, command, env)  # become the server, so signals reach it directly


def cmd_show(args: argparse.Namespace) -> int:
    from analysis.runs.folder import load_run

    print(format_blocks(load_run(args.run, verify=True)))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from analysis.models.train import TrainConfig, train

    result = train(TrainConfig(**option_values(args, TrainConfig)), args.out, device=args.device,
                   progress=not args.quiet, overwrite=args.overwrite)
    print(f"test accuracy {result.test_accuracy:.4f} after {result.epochs} epochs in {result.seconds:.0f} s; "
          f"checkpoint {result.checkpoint}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from analysis.data import make_loader
    from analysis.data.selection import selection_warnings
    from analysis.devices import resolve_device
    from analysis.jobs import CollectJob
    from analysis.models.spec import open_model_and_data
    from analysis.models.train import evaluate

    check_values(CollectJob, vars(args))
    device = resolve_device(args.device)
    model, _, source = open_model_and_data(
        args.model, args.data, weights=args.weights, random_init=args.random_init, pretrained=args.pretrained,
        image_size=args.image_size, seed=args.seed, classes=args.classes, per_class=args.per_class,
    )
    accuracy, loss = evaluate(model.to(device), make_loader(source, args.batch_size, limit=args.limit), device)
    samples = min(len(source.dataset), args.limit or len(source.dataset))
    print(f"top-1 accuracy {accuracy:.4f}, loss {loss:.4f} on {args.data} ({samples} samples)")
    for warning in selection_warnings(source):
        print(f"warning: {warning}")
    return 0


def _against_run(args: argparse.Namespace, function: Callable) -> tuple:
    """(run, model, loader, images): the run folder (RUN or --out) with the model and a loader of the
    data (the run's own images unless options say otherwise, which it prints), read from the run's
    meta.json where not given, checked to belong to it; `function`'s options are checked first."""
    from analysis.devices import resolve_device
    from analysis.data.jpeg import make_image_loader
    from analysis.files import check_creatable
    from analysis.jobs import CollectJob
    from analysis.runs.matching import open_for_run

    check_values(function, vars(args))
    check_values(CollectJob, vars(args))
    path = args.run or args.out
    if path is None:
        raise OptionError("name the run folder: se-analysis COMMAND RUN (or --out RUN).")
    device = resolve_device(args.device)
    run, model, source, limit, images = open_for_run(
        path, args.model, args.data, weights=args.weights, random_init=args.random_init, pretrained=args.pretrained,
        image_size=args.image_size, classes=args.classes, per_class=args.per_class, limit=args.limit,
    )
    check_creatable(run.path, "the run folder")  # where the new table goes, before the pass that makes it
    print(f"{args.command}: {images}")
    loader = make_image_loader(source, args.batch_size, device, workers=args.workers, limit=limit)
    return run, model.to(device), loader, min(len(source.dataset), limit or len(source.dataset))


def cmd_ablate(args: argparse.Namespace) -> int:
    from analysis.experiments.interventions import ablate, format_interventions

    run, model, loader, images = _against_run(args, ablate)
    options = option_values(args, ablate, skip=RUN_TIME)
    table = ablate(model, loader, run, **options, progress=not args.quiet, total=images)
    run.add_table("interventions", table)
    print("\n".join([format_interventions(table), *warning_lines(run), f"table interventions written to {run.path}"]))
    return 0


def cmd_attribute(args: argparse.Namespace) -> int:
    from analysis.experiments.attributions import attribute

    run, model, loader, images = _against_run(args, attribute)
    options = option_values(args, attribute, skip=RUN_TIME)
    table, blocks = attribute(model, loader, run, **options, progress=not args.quiet, total=images)
    run.add_table("attributions", table)
    run.add_table("attribution_blocks", blocks)
    with pd.option_context("display.width", 200):
        print(blocks.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print("\n".join([*warning_lines(run), f"tables attributions, attribution_blocks written to {run.path}"]))
    return 0


def cmd_paper(args: argparse.Namespace) -> int:
    from analysis.experiments.paper import Protocol
    from analysis.jobs import CollectJob, run_paper
    from analysis.presentation.paper_page import format_paper

    job = CollectJob(**option_values(args, CollectJob, skip=PAPER_SKIP), progress=not args.quiet)
    print(format_paper(run_paper(job, Protocol(**option_values(args, Protocol)))))
    return 0


PAPER_SKIP = ("progress", "limit", "classes", "per_class", "distributed")  # CollectJob's fields `paper` sets

# ablate's own seed; the model's random-init weights and the per-class sample come from the run's
ABLATE_SEED = "seeds the shuffle intervention and the bootstrap (random-init weights and --per-class come from the run)"
MODEL_AND_DATA = ("model", "data", "weights", "random_init", "pretrained", "image_size", "limit", "classes",
                  "per_class", "batch_size", "workers", "device")
HELP = {
    "out": "run folder to write",
    "weights": "state dict (.pth, .pt) or .safetensors file, loaded without code",
    "random_init": "allow a model with random weights",
    "pretrained": "the library's pretrained weights (timm's default tag, torchvision's DEFAULT), read from its cache "
                  "(Hugging Face or torch hub) or fetched into it; HF_HUB_OFFLINE=1 reads only the cache",
    "gates": "regular expression over module paths naming the gate modules yourself",
    "workers": "DataLoader worker processes",
    "decode": "decode images with PIL in the workers (cpu) or JPEGs with nvjpeg (gpu); "
              "auto: gpu for an imagefolder on a CUDA device",
    "limit": "use a seeded stratified subset of N samples (every class represented)",
    "classes": "only these classes, comma-separated: names, WordNet ids (ImageNet folders) or indices; "
               "labels keep their indices",
    "per_class": "a sample of N images of each class, drawn with --seed (all of a class with fewer)",
    "image_size": "resize/crop images to this size (default: the model's)",
    "device": "auto | cpu | cuda | cuda:N",
    "compile": "torch.compile the hooked model",
    "bins": "histogram bins per channel, equiprobable on the calibration sample",
    "reservoir": "gate vectors kept per class (0: automatic)",
    "topk": "top samples kept per channel",
    "shards": "data shards for jackknife intervals",
    "permutations": "pseudo-label relabellings of the permutation null (perm_p's floor is 1/(1+N)); "
                    "they take N x classes x channels x 4 bytes",
    "calibration": "samples that set each channel's shift and histogram edges (the smallest ids among "
                   "each process's first N)",
    "seed": "seeds the reservoir, the shards, --per-class, random-init weights, the untrained control, paper's channels",
    "onset_min_excess": "detectable onset: eta2 above its null by this",
    "onset_margin": "shape onset: shape_sep above its controls by this",
    "overwrite": "replace an existing run folder",
    "control": "untrained: also collect the same architecture untrained (fresh weights, BatchNorm statistics "
               "recomputed on the data) into RUN/untrained/seed_S/, the band of the magnitude and shape answers; "
               "none: skip it (those answers are then undetermined)",
    "control_seeds": "untrained networks (weight seeds --seed+1 .. --seed+N); their band is the reference",
    "control_limit": "images per control pass, a seeded stratified subset (default: all of the run's)",
    "distributed": "under torchrun: each process collects a shard of the data, rank 0 writes the merged run",
    "groups": "comma-separated: block (each alone), stage (each), a stage (SE_4_*), all, or blocks joined by + (SE_4_2+SE_4_3)",
    "interventions": "comma-separated subset",
    "resamples": "bootstrap resamples of the images",
    "method": "captum method",
    "target": "which class logit to attribute",
    "steps": "integrated-gradient steps",
}


def _registered() -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """(help texts, choices) that the library's registries and constants hold: the kinds of model and
    data spec as registered now, and the values of each option with a fixed set."""
    from analysis.data import spec_forms as data_forms
    from analysis.data.jpeg import DECODE_CHOICES
    from analysis.experiments.attributions import METHODS, TARGETS
    from analysis.models.architectures import ARCHITECTURES, SE_VARIANTS
    from analysis.models.controls import CONTROLS
    from analysis.models.precision import AMP_NAMES
    from analysis.models.spec import spec_forms as model_forms
    from analysis.models.train import SCHEDULES

    texts = {"model": f"{model_forms()} (a tag implies --pretrained)", "data": data_forms()}
    choices = {"decode": DECODE_CHOICES, "amp": AMP_NAMES, "control": (*CONTROLS, "none"), "arch": tuple(ARCHITECTURES),
               "se": SE_VARIANTS, "schedule": SCHEDULES, "method": METHODS, "target": TARGETS}
    return {**HELP, **texts}, choices


def _options(p: argparse.ArgumentParser, source: Callable | type, **kwargs) -> None:
    texts, choices = _registered()
    add_options(p, source, help=texts, choices=choices, **kwargs)


def _quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _against_run_parser() -> argparse.ArgumentParser:
    """The options of commands that apply a model to data against an existing run folder (--out)."""
    from analysis.jobs import CollectJob

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("run", nargs="?", type=Path, help="run folder; model, weights and images default to its own")
    p.add_argument("--out", type=Path, help="the run folder, as an option")
    # Model and data are given only to override the run's own, and then checked against it.
    texts, choices = _registered()
    p.add_argument("--model", help=f"{texts['model']} (default: the run's)")
    p.add_argument("--data", help=f"{texts['data']} (default: the run's)")
    own = {name: f"{texts[name]}; None: the run's own" for name in ("limit", "classes", "per_class")}
    add_options(p, CollectJob, help={**texts, **own}, choices=choices,
                only=[name for name in MODEL_AND_DATA if name not in ("model", "data")])
    _quiet(p)
    return p


def build_parser() -> argparse.ArgumentParser:  # long: one short paragraph per subcommand, in --help order
    from analysis.experiments.attributions import attribute
    from analysis.experiments.interventions import ablate
    from analysis.experiments.paper import Protocol
    from analysis.jobs import CollectJob
    from analysis.models.train import TrainConfig

    parser = argparse.ArgumentParser(
        prog="se-analysis", description="Where do the gates of an SE network become class-specific?"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("collect", help="collect gate statistics over a data set and write a run folder")
    _options(p, CollectJob, skip=("progress",))
    _quiet(p)
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("train", help="train a project SE-ResNet and save a checkpoint with epoch snapshots")
    _options(p, TrainConfig)
    p.add_argument("--device", default="auto", help=HELP["device"])
    p.add_argument("--out", required=True, type=Path, help="checkpoint folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint")
    _quiet(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="top-1 accuracy of a model on a data set")
    _options(p, CollectJob, only=(*MODEL_AND_DATA, "seed"))
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("demo", help="collect on the shipped Fashion-MNIST SE-ResNet-20 and print its block table")
    p.add_argument("--model", type=Path, default=DEMO_CHECKPOINT, help="checkpoint to use")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (replaced on each demo)")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="folder for the demo's report")
    _options(p, CollectJob, only=("limit", "control", "control_seeds"))
    p.add_argument("--control-limit", type=int, default=DEMO_CONTROL_LIMIT, help=HELP["control_limit"].replace(
        "all of the run's", f"{DEMO_CONTROL_LIMIT}, to stay under a minute on two CPU cores"))
    _quiet(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="write self-contained HTML reports (and PDF) for runs, with an index page")
    p.add_argument("runs", nargs="+", type=Path, help="run folders")
    p.add_argument("--out", type=Path, default=Path("reports"), help="folder for the reports")
    p.add_argument("--pdf", action="store_true", help="also write report.pdf for each run")
    _quiet(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("dashboard", help="explore runs in the Streamlit dashboard")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder whose run folders the app may read")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="localhost", help="address to serve on (0.0.0.0 to share it)")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("show", help="print the per-block table of a run and its onset block")
    p.add_argument("run", type=Path)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("paper", help="the SE paper's Role-of-Excitation study (Figs. 6-7) as a run folder with its page")
    _options(p, CollectJob, skip=PAPER_SKIP)
    add_options(p, Protocol)
    _quiet(p)
    p.set_defaults(func=cmd_paper)

    p = sub.add_parser("ablate", parents=[_against_run_parser()],
                       help="replace the gates of blocks and groups (ones, mean, class-mean, shuffle) "
                            "and measure the accuracy change; stored in the run folder")
    texts, choices = _registered()
    add_options(p, ablate, skip=RUN_TIME, choices=choices, help={**texts, "seed": ABLATE_SEED})
    p.set_defaults(func=cmd_ablate)

    p = sub.add_parser("attribute", parents=[_against_run_parser()],
                       help="attribute the class logit to every gate channel with captum, per class; "
                            "stored in the run folder")
    _options(p, attribute, skip=RUN_TIME)
    p.set_defaults(func=cmd_attribute)
    return parser


def _error(text: str) -> None:
    sys.stderr.write(f"se-analysis: error: {text}\n")  # one write: ranks' lines never interleave


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        code = func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except AnalysisError as e:
        _error(first_line(e))
        return 2
    except KeyboardInterrupt:
        print("se-analysis: interrupted; nothing was written.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader (`| head`) stopped: drop what is left, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        _error(f"{e.strerror or type(e).__name__}: {e.filename or first_line(e)}.")
        return 2
    except Exception as e:
        if os.environ.get("SE_ANALYSIS_TRACEBACK"):
            raise
        _error(f"unexpected {type(e).__name__}: {first_line(e)} (SE_ANALYSIS_TRACEBACK=1 shows where).")
        return 1


if __name__ == "__main__":
    sys.exit(main())
