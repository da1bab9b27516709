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
TERMINAL = 120  # columns the printed block table and lines fit


def format_blocks(run: Run) -> str:
    """What `show`, `collect` and `demo` print: what was measured, the headline table (each measure
    beside its controls), the chance levels, one line per onset in words, the run's warnings."""
    import textwrap

    from analysis.presentation import views
    from analysis.presentation.answer import onset_lines
    from analysis.presentation.numbers import text_table

    s = views.summary(run)
    head = (f"run {views.shown_path(run.path)}: model {s['model']}, data {s['data']}, {s['samples']:,} samples, "
            f"{s['classes']} classes, {s['blocks']} SE blocks")
    chance = (f"chance: eta2 {s['eta2_null']:.3g} without a class effect, probe accuracy {s['probe_chance']:.3g}. "
              "Columns: README 'Table columns'; all of them: se-analysis report.")
    lines = [*onset_lines(run), *warning_lines(run)]
    wrapped = [textwrap.fill(line, TERMINAL, subsequent_indent="  ", break_on_hyphens=False)
               for line in [head, chance, *lines]]
    return "\n".join([wrapped[0], text_table(views.headline(run)), *wrapped[1:]])


def warning_lines(run: Run) -> list[str]:
    """The run's own warnings (too few images and the like), one line each, as every command that
    reads or writes a run prints them."""
    return [f"warning: {w}" for w in run.meta.warnings]


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
    """(run, model, loader, images, source): the run folder (RUN or --out) with the model and a loader
    of the data (the run's own images unless options say otherwise, which it prints), read from the
    run's meta.json where not given, checked to belong to it; `function`'s options are checked first."""
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
    return run, model.to(device), loader, min(len(source.dataset), limit or len(source.dataset)), source


def cmd_ablate(args: argparse.Namespace) -> int:
    from analysis.experiments.interventions import ablate, format_interventions

    run, model, loader, images, _ = _against_run(args, ablate)
    options = option_values(args, ablate, skip=RUN_TIME)
    table = ablate(model, loader, run, **options, progress=not args.quiet, total=images)
    run.add_table("interventions", table)
    print("\n".join([format_interventions(table), *warning_lines(run), f"table interventions written to {run.path}"]))
    return 0


def cmd_channels(args: argparse.Namespace) -> int:
    from analysis.experiments.channels import channel_ablate, channel_agreement

    run, model, loader, images, _ = _against_run(args, channel_ablate)
    options = option_values(args, channel_ablate, skip=RUN_TIME)
    table = channel_ablate(model, loader, run, **options, progress=not args.quiet, total=images)
    agreement = channel_agreement(table, run, shuffles=args.shuffles, seed=args.seed)
    run.add_table("channel_interventions", table)
    run.add_table("channel_agreement", agreement)
    with pd.option_context("display.width", 250, "display.max_columns", 50):
        print(agreement.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("\n".join([*warning_lines(run), f"tables channel_interventions, channel_agreement written to {run.path}"]))
    return 0


def cmd_cascade(args: argparse.Namespace) -> int:
    from analysis.experiments.cascade import cascade, cascade_flags, format_cascade

    run, model, loader, images, source = _against_run(args, cascade)
    options = option_values(args, cascade, skip=(*RUN_TIME, "batchnorm_data"))
    table = cascade(model, loader, run, batchnorm_data=source, **options, progress=not args.quiet, total=images)
    flags = cascade_flags(table)
    run.add_table("cascade", table)
    run.add_table("cascade_flags", flags)
    with pd.option_context("display.width", 250, "display.max_columns", 50):
        print(format_cascade(table, flags))
    print("\n".join([*warning_lines(run), f"tables cascade, cascade_flags written to {run.path}"]))
    return 0


def cmd_attribute(args: argparse.Namespace) -> int:
    from analysis.experiments.attributions import attribute

    run, model, loader, images, _ = _against_run(args, attribute)
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


def cmd_similarity(args: argparse.Namespace) -> int:
    from analysis.errors import RunFolderError
    from analysis.measures.similarity import similarity, squeeze_similarity
    from analysis.runs.folder import load_run
    from analysis.runs.matching import check_same_data

    run = load_run(args.run, verify=True)
    if args.other is None:
        if run.meta.inputs is None:
            raise RunFolderError(f"{run.path} holds no squeezed inputs z; name a second run folder to compare with.")
        table = squeeze_similarity(run.stats)
        print(f"linear CKA between each block's squeezed input z and its gate s, run {run.path}")
    else:
        other = load_run(args.other, verify=True)
        check_same_data(run, other)
        table = similarity(run.stats, other.stats, pairs=args.pairs)
        print(f"linear CKA between the gate vectors of the images both kept: {run.path} (rows) and {other.path}")
    with pd.option_context("display.width", 250, "display.max_rows", 500, "display.max_columns", 50):
        if args.other is not None and args.pairs == "all":
            for value in ("cka", "cka_debiased"):
                matrix = table.pivot(index="block_a", columns="block_b", values=value)
                matrix = matrix.loc[table["block_a"].unique(), table["block_b"].unique()]
                print(f"{value}, {table['samples'].iloc[0]} images\n{matrix.to_string(float_format=lambda v: f'{v:.3f}')}")
        else:
            print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def cmd_trajectory(args: argparse.Namespace) -> int:
    from analysis.experiments.trajectory import onset_table
    from analysis.jobs import CollectJob, run_trajectory

    job = CollectJob(**option_values(args, CollectJob, skip=TRAJECTORY_SKIP), model=str(args.checkpoint),
                     progress=not args.quiet)
    onsets = onset_table(run_trajectory(job))
    print(onsets.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print(f"trajectory of {len(onsets)} snapshots written to {args.out} (trajectory.parquet, trajectory.png)")
    return 0


# CollectJob's fields `trajectory` sets: the model is each snapshot of the checkpoint folder
TRAJECTORY_SKIP = ("model", "weights", "random_init", "pretrained", "progress", "distributed")


PAPER_SKIP = ("progress", "limit", "classes", "per_class", "distributed")  # CollectJob's fields `paper` sets

# ablate's own seed; the model's random-init weights and the per-class sample come from the run's
CHANNELS_SEED = "seeds the bootstrap and the channel shuffles of the null"
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
    "top": "only the N channels of each block ranked first by --by (none: every channel)",
    "by": "channels-table column ranking the channels for --top",
    "copies": "channels intervened on in one forward (the batch repeated this many times)",
    "shuffles": "shufflings of the channels for the null of the agreement",
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


def _command(sub: argparse._SubParsersAction, name: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose one-line help is also its description in `se-analysis NAME --help`."""
    text = kwargs["help"]
    return sub.add_parser(name, description=text[:1].upper() + text[1:] + ".", **kwargs)


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
    from analysis.experiments.cascade import UNITS, cascade
    from analysis.experiments.channels import channel_ablate, channel_agreement
    from analysis.experiments.interventions import ablate
    from analysis.experiments.paper import Protocol
    from analysis.jobs import CollectJob
    from analysis.measures.similarity import PAIRS
    from analysis.models.controls import CONTROLS
    from analysis.models.train import TrainConfig

    parser = argparse.ArgumentParser(
        prog="se-analysis", description="Where do the gates of an SE network become class-specific?"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(sub, "collect", help="collect gate statistics over a data set and write a run folder")
    _options(p, CollectJob, skip=("progress",))
    _quiet(p)
    p.set_defaults(func=cmd_collect)

    p = _command(sub, "train", help="train a project SE-ResNet and save a checkpoint with epoch snapshots")
    _options(p, TrainConfig)
    p.add_argument("--device", default="auto", help=HELP["device"])
    p.add_argument("--out", required=True, type=Path, help="checkpoint folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint")
    _quiet(p)
    p.set_defaults(func=cmd_train)

    p = _command(sub, "eval", help="top-1 accuracy of a model on a data set")
    _options(p, CollectJob, only=(*MODEL_AND_DATA, "seed"))
    p.set_defaults(func=cmd_eval)

    p = _command(sub, "demo", help="collect on the shipped Fashion-MNIST SE-ResNet-20 and print its block table")
    p.add_argument("--model", type=Path, default=DEMO_CHECKPOINT, help="checkpoint to use")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (replaced on each demo)")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="folder for the demo's report")
    _options(p, CollectJob, only=("limit", "control", "control_seeds"))
    p.add_argument("--control-limit", type=int, default=DEMO_CONTROL_LIMIT, help=HELP["control_limit"].replace(
        "all of the run's", f"{DEMO_CONTROL_LIMIT}, to stay under a minute on two CPU cores"))
    _quiet(p)
    p.set_defaults(func=cmd_demo)

    p = _command(sub, "report", help="write self-contained HTML reports (and PDF) for runs, with an index page")
    p.add_argument("runs", nargs="+", type=Path, help="run folders")
    p.add_argument("--out", type=Path, default=Path("reports"), help="folder for the reports")
    p.add_argument("--pdf", action="store_true", help="also write report.pdf for each run")
    _quiet(p)
    p.set_defaults(func=cmd_report)

    p = _command(sub, "dashboard", help="explore runs in the Streamlit dashboard")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder whose run folders the app may read")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="localhost", help="address to serve on (0.0.0.0 to share it)")
    p.set_defaults(func=cmd_dashboard)

    p = _command(sub, "show", help="print a run's answer: its headline table and one line per onset")
    p.add_argument("run", type=Path)
    p.set_defaults(func=cmd_show)

    p = _command(sub, "paper", help="the SE paper's Role-of-Excitation study (Figs. 6-7) as a run folder with its page")
    _options(p, CollectJob, skip=PAPER_SKIP)
    add_options(p, Protocol)
    _quiet(p)
    p.set_defaults(func=cmd_paper)

    p = _command(sub, "trajectory", help="collect every epoch snapshot of a checkpoint folder (resumable) and "
                                          "tabulate the measures and onsets by epoch")
    p.add_argument("checkpoint", type=Path, help="checkpoint folder with epoch snapshots (se-analysis train)")
    _options(p, CollectJob, skip=TRAJECTORY_SKIP)
    p.set_defaults(control=CONTROLS[0])
    _quiet(p)
    p.set_defaults(func=cmd_trajectory)

    p = _command(sub, "similarity", help="linear CKA between the gate vectors of two runs, block by block "
                                          "(or between each block's z and s in one run)")
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument("other", nargs="?", type=Path,
                   help="run folder of the same images (same data, --seed and --reservoir): another epoch, seed or "
                        "RUN/untrained; without it, each block's squeezed input z against its gate s")
    p.add_argument("--pairs", choices=PAIRS, default=PAIRS[0],
                   help="all: every block of RUN against every block of OTHER; same: each against its namesake")
    p.set_defaults(func=cmd_similarity)

    p = _command(sub, "ablate", parents=[_against_run_parser()],
                       help="replace the gates of blocks and groups (ones, mean, class-mean, shuffle) "
                            "and measure the accuracy change; stored in the run folder")
    texts, choices = _registered()
    add_options(p, ablate, skip=RUN_TIME, choices=choices, help={**texts, "seed": ABLATE_SEED})
    p.set_defaults(func=cmd_ablate)

    p = _command(sub, "channels", parents=[_against_run_parser()],
                       help="replace each gate channel alone (by its mean or 1) and measure every class's accuracy "
                            "change; does a channel's class preference say which class loses? stored in the run")
    add_options(p, channel_ablate, skip=RUN_TIME, choices=choices, help={**texts, "seed": CHANNELS_SEED})
    add_options(p, channel_agreement, only=("shuffles",), help=texts)
    p.set_defaults(func=cmd_channels)

    p = _command(sub, "cascade", parents=[_against_run_parser()],
                       help="re-draw the network's weights from the last stage (or block) down, as the untrained "
                            "control does, and measure every block at each step: which measures do not move? "
                            "stored in the run")
    add_options(p, cascade, skip=(*RUN_TIME, "batchnorm_data"), choices={**choices, "unit": UNITS},
                help={**texts, "unit": "re-draw a stage or a block more at each step",
                      "seeds": "weight seeds per step: the run's untrained controls' (--seed + 1 ..)"})
    p.set_defaults(func=cmd_cascade)

    p = _command(sub, "attribute", parents=[_against_run_parser()],
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
