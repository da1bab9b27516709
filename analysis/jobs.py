"""A collection job end to end: model spec + data spec -> statistics -> run folder.

    run = run_collect(CollectJob(model="timm:seresnet50", data="imagefolder:/data/val",
                                 out=Path("runs/r50"), weights=Path("r50.pth")))

The CLI's `collect` and `demo` are this function; its resolved job goes into meta.json.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from analysis.capture.collect import collect, gate_precision
from analysis.capture.distributed import agree_ranks, join_ranks, merge_ranks, share_model
from analysis.capture.stats import GateStats, StatsConfig
from analysis.data.jpeg import make_image_loader
from analysis.devices import resolve_device
from analysis.files import sha256
from analysis.measures.tables import run_tables
from analysis.models.checkpoint import checkpoint_paths
from analysis.models.spec import open_model_and_data
from analysis.runs.folder import Run, check_writable, write_run


@dataclass(frozen=True)
class CollectJob:
    """Everything `se-analysis collect` takes; see its --help for each field."""

    model: str  # checkpoint path, project architecture, timm:NAME or torchvision:NAME
    data: str  # data spec, see analysis.data
    out: Path  # run folder to write
    weights: Path | None = None  # state dict or safetensors file for a non-checkpoint model
    random_init: bool = False  # allow random weights
    gates: str | None = None  # regex naming the gate modules, instead of discovery by type
    batch_size: int = 128
    workers: int = 0
    decode: str = "auto"  # auto, cpu (PIL in the workers), gpu (nvjpeg, imagefolder only); see analysis.jpeg
    limit: int | None = None  # first N samples only
    image_size: int | None = None  # default: the model's preferred size, else the data's own
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    amp: str = "none"  # none, bf16, fp16
    channels_last: bool = False
    compile: bool = False
    bins: int = StatsConfig.bins  # what the statistics keep: see StatsConfig
    reservoir: int = StatsConfig.reservoir
    topk: int = StatsConfig.topk
    shards: int = StatsConfig.shards
    seed: int = StatsConfig.seed
    onset_min_excess: float | None = None
    overwrite: bool = False
    progress: bool = True
    distributed: bool = False  # one shard per torchrun process, merged; see analysis.distributed


def run_collect(job: CollectJob) -> Run | None:
    """Collect gate statistics for `job` and write its run folder (refusing early to overwrite).

    With `job.distributed`, under torchrun, each process collects its shard of the data, and only
    rank 0 writes the merged run; the other ranks return None.
    """
    check_writable(job.out, job.overwrite)
    device = resolve_device(job.device)
    with join_ranks(device) if job.distributed else contextlib.nullcontext() as rank:
        device = rank.device if rank else device
        model, checkpoint, source = open_model_and_data(
            job.model, job.data, weights=job.weights, random_init=job.random_init, image_size=job.image_size
        )
        model.to(device)
        if rank:
            share_model(model)
        config = StatsConfig(
            source.num_classes, bins=job.bins, reservoir=job.reservoir, topk=job.topk, shards=job.shards, seed=job.seed
        )
        total = min(len(source.dataset), job.limit) if job.limit else len(source.dataset)
        shard = rank.shard(total) if rank else None
        loader = make_image_loader(
            source, job.batch_size, device, decode=job.decode, workers=job.workers, limit=job.limit, indices=shard
        )
        stats = collect(
            model, loader, source.num_classes,
            gate_pattern=job.gates, class_names=source.class_names, config=config,
            amp=None if job.amp == "none" else job.amp, channels_last=job.channels_last, compile=job.compile,
            progress=job.progress and (not rank or rank.rank == 0), total=len(shard) if rank else total,
            agree=agree_ranks if rank else None,
        )
        if rank:
            merge_ranks(stats)
    if rank and rank.rank != 0:
        return None
    weights_file = job.weights or (checkpoint_paths(job.model)[0] if checkpoint else None)
    meta = {
        "model": job.model,
        "weights": str(weights_file) if weights_file else None,
        "weights_sha256": sha256(weights_file) if weights_file else None,
        "checkpoint": checkpoint,
        "data": source.describe(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "job": asdict(job),
        "processes": rank.world if rank else 1,
        "gate_precision": gate_precision(model, stats.gates),
    }
    return save_run(stats, job.out, meta, overwrite=job.overwrite, min_excess=job.onset_min_excess)


def save_run(
    stats: GateStats,
    out: str | Path,
    meta: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
    min_excess: float | None = None,
) -> Run:
    """Compute every table of a run from `stats` and write the run folder `out` atomically.

    `min_excess` sets the onset rule's effect size (see analysis.measures.onset).
    """
    check_writable(out, overwrite)
    tables, onset = run_tables(stats, min_excess)
    meta = {**(meta or {}), "onset": onset}
    return write_run(stats, out, meta, tables, overwrite=overwrite)
