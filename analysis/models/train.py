"""Train the project's SE-ResNets on any data source and save checkpoints with epoch snapshots.

    result = train(TrainConfig(arch="se_resnet20", data="fashion-mnist", epochs=15), "checkpoints/x")

GPU when present (bf16 autocast, channels_last), CPU otherwise. Augmentation runs on whole batches
on the device: a random translation by up to `pad` pixels (replicate padding) and, for data with
left/right symmetry, a random horizontal flip.
"""

from __future__ import annotations

import math
import platform
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from analysis.devices import resolve_device
from analysis.files import check_replaceable, replacing
from analysis.models.checkpoint import FORMAT, parameter_count, save_checkpoint
from analysis.data import make_loader, open_data
from analysis.models.architectures import build_model
from analysis.models.precision import autocast
from analysis.options import Help, Range, check_fields
from analysis.versions import software_versions


SCHEDULES = ("cosine", "step")  # the learning-rate schedules of TrainConfig.schedule


@dataclass(frozen=True)
class TrainConfig:
    """One training run; saved in every checkpoint's metadata."""

    arch: str = "se_resnet20"
    se: Annotated[str, Help("SE block or the paper's ablations")] = "se"
    reduction: Annotated[int, Range(1), Help(
        "SE reduction ratio r; small stages (16..64 channels) need a smaller r than ResNet-50's 16")] = 4
    width: Annotated[int | None, Range(1), Help("first-stage width (unset: the architecture's)")] = None
    data: str = "fashion-mnist"  # training spec; the test split is the same kind with :test
    epochs: Annotated[int, Range(1)] = 15
    batch_size: Annotated[int, Range(1)] = 128
    lr: Annotated[float, Range(0), Help("SGD with Nesterov momentum 0.9, scaled linearly with batch_size / 128")] = 0.1
    weight_decay: Annotated[float, Range(0)] = 5e-4
    schedule: Annotated[str, Help("step: x0.1 at 50% and 75% of the epochs")] = "cosine"
    pad: Annotated[int, Range(0), Help("random translation in pixels")] = 2
    flip: bool = True
    seed: Annotated[int, Range(0)] = 0
    snapshots: Annotated[tuple[int, ...], Help("epochs saved as snapshots epoch_NNN beside final, comma-separated")] = (
        1, 2, 5, 10)
    workers: Annotated[int, Range(0)] = 0
    limit: Annotated[int | None, Range(1), Help("train on the first N samples only (tests)")] = None
    test_limit: Annotated[int | None, Range(1), Help("evaluate on the first N test samples only (tests)")] = None

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class TrainResult:
    test_accuracy: float
    epochs: int
    seconds: float
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch
    checkpoint: Path | None = None


def augment(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random translation (replicate padding) and horizontal flip, per sample. x: [N, C, H, W]."""
    n, c, h, w = x.shape
    if pad:
        shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=generator).to(x.device)
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
        rows = (shifts[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(n, c, h, w + 2 * pad)
        x = padded.gather(2, rows)
        cols = (shifts[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(n, c, h, w)
        x = x.gather(3, cols)
    if flip:
        mirrored = torch.rand(n, generator=generator).to(x.device) < 0.5
        x = torch.where(mirrored[:, None, None, None], x.flip(3), x)
    return x


def test_split(spec: str) -> str:
    """The evaluation spec that goes with a training spec: fashion-mnist -> fashion-mnist:test."""
    return spec.rsplit(":", 1)[0] + ":test" if spec.startswith("fashion-mnist") else spec


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device) -> tuple[float, float]:
    """(top-1 accuracy, mean cross-entropy) of `model` over `loader`."""
    model.eval()
    correct, total, loss = 0, 0, 0.0
    amp = autocast(device, "bf16" if device.type == "cuda" else None)
    for x, y, *_ in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with amp:
            logits = model(x).float()
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        total += len(y)
    return correct / max(total, 1), loss / max(total, 1)


def _optimizer(
    model: nn.Module, config: TrainConfig, steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with Nesterov momentum, no weight decay on biases and norms, and the per-step schedule."""
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.dim() == 1 else decay).append(p)
    optimizer = torch.optim.SGD(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr * config.batch_size / 128, momentum=0.9, nesterov=True,
    )
    if config.schedule == "cosine":
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(steps * 0.5), int(steps * 0.75)], 0.1)


CHECKPOINT_FILE = re.compile(r"(final|epoch_\d{3})\.(safetensors|json)")


def is_checkpoint_folder(path: Path) -> bool:
    """Whether `path` holds only what `train` writes, with its final.json in the checkpoint format."""
    try:
        names = [p.name for p in path.iterdir()]
        final = (path / "final.json").read_text()
    except (OSError, UnicodeDecodeError):
        return False
    return all(CHECKPOINT_FILE.fullmatch(n) for n in names) and f'"format": "{FORMAT}"' in final


def check_checkpoint_folder(out: str | Path, overwrite: bool = False) -> Path:
    """Refuse, before training, an `out` that cannot be made, or that exists (without `overwrite`,
    or that is not a checkpoint folder `train` wrote: nothing else is ever replaced)."""
    return check_replaceable(out, "a checkpoint folder", is_checkpoint_folder, overwrite=overwrite)


def train(
    config: TrainConfig, out: str | Path | None, *, device: str = "auto", progress: bool = True, overwrite: bool = False
) -> TrainResult:
    """Train per `config`; with `out`, write `out/final.*` and the snapshots `out/epoch_NNN.*`.

    The folder is written whole under a temporary name and then takes `out`'s place, so an
    `overwrite` leaves no snapshot of an older training beside the new checkpoint.
    """
    if out is None:
        return _train(config, None, device, progress)
    out = check_checkpoint_folder(out, overwrite)
    with replacing(out) as tmp:
        tmp.mkdir()
        result = _train(config, tmp, device, progress)
    result.checkpoint = out / result.checkpoint.name
    return result


def _train(config: TrainConfig, out: Path | None, device: str, progress: bool) -> TrainResult:
    torch.manual_seed(config.seed)
    dev = resolve_device(device)
    source = open_data(config.data)
    test_source = open_data(test_split(config.data))
    channels = source.dataset[0][0].shape[0]
    arch_args = {"se": config.se, "reduction": config.reduction, "num_classes": source.num_classes, "in_channels": channels}
    if config.width:
        arch_args["width"] = config.width
    model = build_model(config.arch, **arch_args).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    loader = make_loader(source, config.batch_size, workers=config.workers, limit=config.limit, shuffle=True, seed=config.seed)
    test_loader = make_loader(test_source, 512, workers=config.workers, limit=config.test_limit)
    optimizer, schedule = _optimizer(model, config, config.epochs * len(loader))
    generator = torch.Generator().manual_seed(config.seed + 1)
    amp = autocast(dev, "bf16" if dev.type == "cuda" else None)
    hardware = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    result = TrainResult(0.0, config.epochs, 0.0)
    start = time.perf_counter()

    def meta(epoch: int, accuracy: float) -> dict:
        return {
            "arch": config.arch, "arch_args": arch_args, "class_names": source.class_names,
            "data": source.describe(), "test_data": test_split(config.data), "epoch": epoch,
            "test_accuracy": accuracy, "train_seconds": round(time.perf_counter() - start, 1),
            "hardware": hardware, "parameters": parameter_count(model), "train_config": asdict(config),
            "train_losses": result.losses, "software": software_versions(),
        }

    for epoch in range(1, config.epochs + 1):
        model.train()
        total, seen = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{config.epochs}", disable=not progress, leave=False)
        for x, y, _ in bar:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            x = augment(x, config.pad, config.flip, generator)
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with amp:
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(y)
            seen += len(y)
        result.losses.append(total / seen)
        if out is not None and epoch in config.snapshots and epoch != config.epochs:
            accuracy, _ = evaluate(model, test_loader, dev)
            save_checkpoint(model, Path(out) / f"epoch_{epoch:03d}", meta(epoch, accuracy))
        if progress:
            print(f"epoch {epoch}: train loss {result.losses[-1]:.4f}", flush=True)
    result.test_accuracy, _ = evaluate(model, test_loader, dev)
    result.seconds = time.perf_counter() - start
    if out is not None:
        result.checkpoint = save_checkpoint(model, Path(out) / "final", meta(config.epochs, result.test_accuracy))
    return result
