"""A collection job end to end: model spec + data spec -> statistics -> run folder.

    run = run_collect(CollectJob(model="timm:seresnet50", data="imagefolder:/data/val",
                                 out=Path("runs/r50"), weights=Path("r50.pth")))

The CLI's `collect` and `demo` are this function; its resolved job goes into meta.json. With
`control="untrained"` (the default) the same architecture with fresh weights from each of
`control_seeds` seeds (analysis.models.controls) is collected over the same data (or a stratified
`control_limit` of it) and stored as the run folders `out/untrained/seed_S/`.
`run_paper` is the SE paper's Role-of-Excitation study around one such job (`se-analysis paper`);
`run_trajectory` one such job per epoch snapshot of a checkpoint folder (`se-analysis trajectory`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

import pandas as pd
import torch
from torch import nn

from analysis.capture.collect import collect, control_config, gate_precision
from analysis.capture.gates import find_gates
from analysis.capture.distributed import Rank, gather_ranks, join_ranks, merge_ranks, share_model
from analysis.capture.stats import GateStats, StatsConfig
from analysis.data.jpeg import make_image_loader
from analysis.data.selection import PER_CLASS, selection_warnings
from analysis.data.source import IMAGE_SIZE, DataSource, present_classes
from analysis.devices import resolve_device
from analysis.errors import DataError, ModelSpecError, OptionError, RunFolderError, listed
from analysis.experiments.interventions import ablate
from analysis.experiments.paper import Protocol, choose, last_stage, paper_table
from analysis.experiments.trajectory import TABLE_FILE, snapshot_name, trajectory_table
from analysis.files import check_creatable, claimed, replacing, sha256
from analysis.measures.notions import ONSET_MIN_EXCESS, NotionRules
from analysis.measures.tables import control_tables, run_tables, untrained_band
from analysis.options import Range, check_fields, check_values
from analysis.models.checkpoint import checkpoint_paths, snapshots
from analysis.models.controls import CONTROL_SEEDS, control_folder, untrained, untrained_record, untrained_seeds
from analysis.models.precision import amp_name
from analysis.models.spec import open_model_and_data, pretrained_weights, state_sha256
from analysis.runs.folder import Run, check_writable, is_run_folder, load_run, write_run


@dataclass(frozen=True)
class CollectJob:
    """Everything `se-analysis collect` takes; see its --help for each field."""

    model: str  # checkpoint path, project architecture, timm:NAME[.TAG] or torchvision:NAME[.WEIGHTS]
    data: str  # data spec, see analysis.data
    out: Path  # run folder to write
    weights: Path | None = None  # state dict or safetensors file for a non-checkpoint model
    random_init: bool = False  # allow random weights
    pretrained: bool = False  # the library's pretrained weights (timm, torchvision), see analysis.models.pretrained
    gates: str | None = None  # regex naming the gate modules, instead of discovery by type
    batch_size: Annotated[int, Range(1)] = 128
    workers: Annotated[int, Range(0)] = 0
    decode: str = "auto"  # auto, cpu (PIL in the workers), gpu (nvjpeg, imagefolder only); see analysis.data.jpeg
    limit: Annotated[int | None, Range(1)] = None  # a seeded stratified subset of N samples, see make_loader
    classes: tuple[str, ...] | None = None  # class names, WordNet ids or indices to keep, see analysis.data.selection
    per_class: Annotated[int | None, PER_CLASS] = None  # a sample of N per class, drawn with `seed`
    image_size: Annotated[int | None, IMAGE_SIZE] = None  # default: the model's preferred size, else the data's own
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    amp: str = "none"  # none, bf16, fp16: see analysis.models.precision
    channels_last: bool = False
    compile: bool = False
    bins: int = StatsConfig.bins  # what the statistics keep: see StatsConfig
    reservoir: int = StatsConfig.reservoir
    topk: int = StatsConfig.topk
    shards: int = StatsConfig.shards
    seed: int = StatsConfig.seed
    permutations: int = StatsConfig.permutations
    calibration: int = StatsConfig.calibration
    onset_min_excess: float = ONSET_MIN_EXCESS  # the detectable onset's effect size, see analysis.measures.notions
    onset_margin: float = 0.0  # the shape onset's margin over its controls, see analysis.measures.notions
    overwrite: bool = False
    progress: bool = True
    distributed: bool = False  # one shard per torchrun process, merged; see analysis.capture.distributed
    control: str = "untrained"  # untrained: also collect the architecture untrained, into out/untrained/seed_S/; none
    control_seeds: Annotated[int, Range(1)] = CONTROL_SEEDS  # untrained networks, weight seeds seed+1..seed+N
    control_limit: Annotated[int | None, Range(1)] = None  # images per control pass (stratified); default: all

    def __post_init__(self) -> None:
        check_fields(self)
        check_values(StatsConfig, {"bins": self.bins, "reservoir": self.reservoir, "topk": self.topk,
                                   "shards": self.shards, "seed": self.seed, "permutations": self.permutations,
                                   "calibration": self.calibration})


# Images per class below which a class's numbers rest on a handful: the probe's 5 folds cannot each test it.
FEW_IMAGES = 5
P = ParamSpec("P")
R = TypeVar("R")


def holding_out(run: Callable[Concatenate[CollectJob, P], R]) -> Callable[Concatenate[CollectJob, P], R]:
    """`run(job, ...)` with `job.out` checked and claimed (analysis.files.claimed) for its whole
    time, so that a second writer of the same --out is refused at once. Under torchrun only the
    process that writes (rank 0) claims it."""
    @wraps(run)
    def held(job: CollectJob, *args: P.args, **kwargs: P.kwargs) -> R:
        check_writable(job.out, job.overwrite)
        writes = int(os.environ.get("RANK") or 0) == 0
        with claimed(job.out) if writes else contextlib.nullcontext():
            return run(job, *args, **kwargs)
    return held


@holding_out
def run_collect(job: CollectJob) -> Run | None:
    """Collect gate statistics for `job` and write its run folder (refusing early to overwrite).

    With `job.distributed`, under torchrun, each process collects its shard of the data, and only
    rank 0 writes the merged run; the other ranks return None. With `job.control`, each untrained
    network is collected the same way and written inside the run, in the same atomic write.
    """
    device = resolve_device(job.device)
    # Started by torchrun with several processes: each must take its shard, never the whole job.
    distributed = job.distributed or int(os.environ.get("WORLD_SIZE") or 1) > 1
    with join_ranks(device) if distributed else contextlib.nullcontext() as rank:
        device = rank.device if rank else device
        model, checkpoint, source = open_model_and_data(
            job.model, job.data, weights=job.weights, random_init=job.random_init, pretrained=job.pretrained,
            image_size=job.image_size, seed=job.seed, classes=job.classes, per_class=job.per_class,
        )
        if len(present_classes(source)) < 2:
            raise DataError(f"{job.data} has 1 class with samples; class-specificity needs at least two.")
        named = pretrained_weights(job.model, job.pretrained)
        stats = _collect(job, model, source, device, rank)
        hashes = {}
        for seed in untrained_seeds(job.seed, job.control_seeds) if job.control != "none" else []:
            control = untrained(model, seed, source)
            hashes[seed] = state_sha256(control)
            stats.controls.setdefault(job.control, {})[seed] = _collect(job, control, source, device, rank, control=True)
    if rank and rank.rank != 0:
        return None
    weights_file = job.weights or (checkpoint_paths(job.model)[0] if checkpoint else None)
    meta = {
        "model": job.model,
        "weights": str(weights_file) if weights_file else None,
        "weights_sha256": sha256(weights_file) if weights_file else None,
        "checkpoint": checkpoint,
        "pretrained": named.record() if named else None,
        "state_sha256": state_sha256(model),
        "random_init": untrained_record(model, job.seed, source) if weights_file is None and named is None else None,
        "data": {**source.describe(), "limit": job.limit},
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "job": asdict(job),
        "processes": rank.world if rank else 1,
        "warnings": [*selection_warnings(source), *data_warnings(stats)],
        "gate_precision": gate_precision(model, stats.gates, amp_name(job.amp)),
    }
    control_meta = {
        seed: {**meta, "weights": None, "weights_sha256": None, "checkpoint": None, "pretrained": None,
               "random_init": None, "state_sha256": digest,
               "control": {"kind": job.control, **untrained_record(model, seed, source)},
               "warnings": [*selection_warnings(source), *data_warnings(stats.controls[job.control][seed])]}
        for seed, digest in hashes.items()
    }
    rules = NotionRules(**({} if job.onset_min_excess is None else {"min_excess": job.onset_min_excess}),
                        shape_margin=job.onset_margin)
    return save_run(stats, job.out, meta, overwrite=job.overwrite, rules=rules, control_meta=control_meta)


def _collect(job: CollectJob, model: nn.Module, source: DataSource, device: torch.device, rank: Rank | None,
             control: bool = False) -> GateStats:
    """One hooked pass of `model` over the job's data (this process's shard of it, under torchrun); a
    control's pass over `control_limit` of it, keeping `control_config`'s statistics."""
    model.to(device)
    if rank:
        share_model(model)
    config = StatsConfig(
        source.num_classes, bins=job.bins, reservoir=job.reservoir, topk=job.topk, shards=job.shards, seed=job.seed,
        permutations=job.permutations, calibration=job.calibration, classes=present_classes(source),
    )
    limit = min(filter(None, (job.limit, job.control_limit)), default=None) if control else job.limit
    total = min(len(source.dataset), limit) if limit else len(source.dataset)
    shard = rank.shard(total) if rank else None
    loader = make_image_loader(
        source, job.batch_size, device, decode=job.decode, workers=job.workers, limit=limit, indices=shard
    )
    stats = collect(
        model, loader, source.num_classes,
        gate_pattern=job.gates, class_names=source.class_names, config=control_config(config) if control else config,
        amp=job.amp, channels_last=job.channels_last, compile=job.compile,
        progress=job.progress and (not rank or rank.rank == 0), total=len(shard) if rank else total,
        gather=gather_ranks if rank else None, inputs=not control,
    )
    if rank:
        merge_ranks(stats)
    return stats


def data_warnings(stats: GateStats) -> list[str]:
    """What in the data leaves numbers of the run undefined or weak: classes of the data without
    samples (of those present in the source, `StatsConfig.present`: a class subset's other classes
    are left out on purpose) or with fewer than FEW_IMAGES (one: no within-class variance, left out
    of the probe; none with two: eta2, its tests and the probe are NaN), and jackknife shards
    without samples (no interval)."""
    first = stats.gates[0].name
    count = stats.moments(first)[0]  # [S, K]
    per_class, per_shard = count.sum(0).tolist(), count.sum(1).tolist()
    names, expected = stats.class_names, stats.config.present
    found = []
    empty = [names[k] for k in expected if per_class[k] == 0]
    if empty:
        found.append(f"{len(empty)} of {len(expected)} classes have no sample ({listed(empty)}): "
                     "their means and the tables' class columns are undefined.")
    few = [f"{names[k]} {per_class[k]}" for k in expected if 0 < per_class[k] < FEW_IMAGES]
    if few and max(per_class) < 2:
        found.append(f"no class has two images ({len(few)} classes of one): eta2, its tests and the probe are "
                     f"undefined (NaN); collect at least {FEW_IMAGES} images per class.")
    elif few:
        found.append(f"{len(few)} of {len(expected)} classes have fewer than {FEW_IMAGES} images ({listed(few)}): "
                     "their numbers are unreliable, and a class of one image has no within-class variance and is "
                     "left out of the probe; collect more images per class (--per-class).")
    if 0 in per_shard:
        found.append(f"{per_shard.count(0)} of {len(per_shard)} jackknife shards have no sample: "
                     "the eta2 intervals are not reliable; collect more samples or pass fewer --shards.")
    return found


def save_run(
    stats: GateStats,
    out: str | Path,
    meta: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
    rules: NotionRules = NotionRules(),
    control_meta: dict[int, dict[str, Any]] | None = None,
) -> Run:
    """Compute every table of a run from `stats` and write the run folder `out` atomically, with each
    of `stats.controls` (collect(..., control="untrained")) as a run folder of its own inside it
    (`out/untrained/seed_S/`, its meta `control_meta[S]`, by default the run's model and the seed).

    The controls' blocks tables are the band of the notions magnitude and shape (analysis.measures.
    notions, thresholds `rules`); without controls those notions are undetermined.
    """
    check_writable(out, overwrite)
    meta = meta or {}
    inner: dict[str, dict[int, tuple]] = {}
    found = control_tables(stats, rules)
    for kind, by_seed in found.items():
        for seed, (tables_, control_onset) in by_seed.items():
            default = {"model": meta.get("model"), "control": {"kind": kind, "seed": seed}}
            record = {**(control_meta or {}).get(seed, default), "onset": control_onset}
            inner.setdefault(kind, {})[seed] = (stats.controls[kind][seed], record, tables_)
    tables, onset = run_tables(stats, controls=untrained_band(found), rules=rules)
    controls = {kind: {"seeds": sorted(by_seed), "folders": [control_folder(kind, s) for s in sorted(by_seed)],
                       "samples": sorted({c.samples for c in by_seed.values()})}
                for kind, by_seed in stats.controls.items()}
    meta = {**meta, "onset": onset, "controls": controls}
    return write_run(stats, out, meta, tables, overwrite=overwrite, controls=inner)


@holding_out
def run_paper(job: CollectJob, protocol: Protocol) -> Run:
    """The SE paper's Role-of-Excitation study (analysis.experiments.paper): the protocol checked
    against the model and data before anything runs; `job` collected over protocol.per_class images
    of every class (the all-classes curve needs them all); the last stage's gates set to 1 on the same
    images (`ablate`, table `interventions`); the `paper` table and RUN/paper.html written into the run."""
    from analysis.presentation import views
    from analysis.presentation.paper_page import write_paper_page  # matplotlib, only for this job

    job = replace(job, classes=None, per_class=protocol.per_class)
    model, _, source = open_model_and_data(
        job.model, job.data, weights=job.weights, random_init=job.random_init, pretrained=job.pretrained,
        image_size=job.image_size, seed=job.seed, per_class=job.per_class,
    )
    gates = find_gates(model, job.gates)
    choice = choose(protocol, {g.name: g.channels for g in gates}, source)
    group = last_stage([g.name for g in gates])
    run = run_collect(job)
    device = resolve_device(job.device)
    loader = make_image_loader(source, job.batch_size, device, decode=job.decode, workers=job.workers)
    table = ablate(model.to(device), loader, run, groups=group, interventions=("ones",),
                   amp=job.amp, seed=job.seed, progress=job.progress,
                   total=len(source.dataset))
    run.add_table("interventions", table)
    if protocol.blocks is None:  # the defaults with the run's onsets, known now (the rule of every profile figure)
        choice = replace(choice, blocks=tuple(views.default_blocks(run)))
    run.add_table("paper", paper_table(run, choice, protocol.channels, job.seed))
    write_paper_page(run)
    return run


FIGURE_FILE = "trajectory.png"
# CollectJob fields that change where or how fast a snapshot is collected, not what its run holds
NOT_SETTINGS = ("model", "out", "overwrite", "progress", "workers", "decode")


def run_trajectory(job: CollectJob) -> pd.DataFrame:
    """`job.model` a checkpoint folder with epoch snapshots (`se-analysis train` writes them): `job`
    collected for each snapshot into `job.out/epoch_NNN/` (with its control), then the table
    `trajectory` (analysis.experiments.trajectory) written to `job.out/trajectory.parquet` and its
    figure to `job.out/trajectory.png`. Resumable: a snapshot already collected from the same weights
    with the same settings is not collected again; one collected otherwise is replaced only with
    `job.overwrite`. Raises CheckpointError, OptionError, RunFolderError."""
    from analysis.presentation.figures import trajectory_figure  # matplotlib, only for this job

    found = snapshots(job.model)
    out = _check_trajectory_folder(job.out)
    with claimed(out):
        runs = []
        for epoch, checkpoint in found:
            snapshot = replace(job, model=str(checkpoint), out=out / snapshot_name(epoch))
            run = _collected(snapshot)
            if run is None:
                if job.progress:
                    print(f"trajectory: epoch {epoch} ({len(runs) + 1} of {len(found)})", file=sys.stderr)
                run = run_collect(snapshot)
            runs.append(run)
        table = trajectory_table(runs)
        with replacing(out / TABLE_FILE) as tmp:
            table.to_parquet(tmp, index=False)
        with replacing(out / FIGURE_FILE) as tmp:
            trajectory_figure(table).savefig(tmp, format="png", dpi=120)
    return table


def _check_trajectory_folder(out: Path) -> Path:
    """OptionError, before any work, unless `out` can be made or is a folder `run_trajectory` wrote
    (snapshot run folders, its table and figure, and the hidden files of claims and writes)."""
    out = check_creatable(out)
    ours = (TABLE_FILE, FIGURE_FILE)
    strangers = [p for p in out.iterdir() if not (p.name.startswith(".") or p.name in ours or (
        p.name.startswith("epoch_") and is_run_folder(p)))] if out.is_dir() else []
    if out.is_symlink() or strangers:
        raise OptionError(f"{out} is not a trajectory folder that se-analysis wrote ({strangers[0].name if strangers else 'a link'} "
                          "is not ours), so nothing is written into it; choose another --out.")
    return out


def _settings(job: dict[str, Any]) -> dict[str, Any]:
    """A collection job's settings as meta.json records them (JSON), without NOT_SETTINGS."""
    return {k: v for k, v in json.loads(json.dumps(job, default=str)).items() if k not in NOT_SETTINGS}


def _collected(job: CollectJob) -> Run | None:
    """The run folder `job.out` when it was collected from the job's checkpoint weights with the
    job's settings; None when there is none, or (with `job.overwrite`) it was collected otherwise."""
    if not is_run_folder(job.out):
        return None
    run = load_run(job.out)
    same = (run.meta.weights_sha256 == sha256(checkpoint_paths(job.model)[0])
            and _settings(run.document.get("job") or {}) == _settings(asdict(job)))
    if same:
        return run
    if not job.overwrite:
        raise RunFolderError(f"{job.out} was collected from other weights or with other settings; pass --overwrite "
                             "to collect it again.")
    return None
