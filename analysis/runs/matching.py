"""A model and data opened against an existing run folder, checked to belong to it.

`ablate` and `attribute` read a run's statistics (mean gates, channel specificity) and apply them
to a model. Numbers from another model, other weights or other classes would be silently wrong,
so everything is checked here first: the gates (names, module paths, channels), the weights (the
sha256 of the state dict the run used, `state_sha256`) and the class names. Model, weights and data
default to the run's own, read from its meta.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from torch import nn

from analysis.models.checkpoint import checkpoint_paths
from analysis.data import DataSource
from analysis.errors import RunFolderError, RunMismatchError
from analysis.capture.gates import Gate, find_gates
from analysis.files import sha256
from analysis.models.spec import open_model_and_data, pretrained_weights, state_sha256
from analysis.runs.folder import Run, load_run
from analysis.runs.meta import DataRecord, JobRecord


def _summary(gates: list[Gate]) -> str:
    channels = sum(g.channels or 0 for g in gates)
    return f"{len(gates)} gates {gates[0].name}..{gates[-1].name} with {channels} channels"


def run_gates(run: Run, model: nn.Module) -> list[Gate]:
    """The run's gates, checked to be the gates of `model`: same names, module paths and channels.

    A run made with `--gates REGEX` is matched with the same pattern (channels then come from the
    run). Raises RunMismatchError.
    """
    recorded = list(run.meta.stats.gates)
    found = find_gates(model, run.meta.job.gates if run.meta.job else None)
    same = [(g.name, g.path) for g in found] == [(g.name, g.path) for g in recorded] and all(
        f.channels in (None, r.channels) for f, r in zip(found, recorded)
    )
    if not same:
        raise RunMismatchError(
            f"{run.path} is a run of another model: it holds {_summary(recorded)}, the model has {_summary(found)}."
        )
    return recorded


class Opened(NamedTuple):
    """A run with the model and data opened against it (`open_for_run`)."""

    run: Run
    model: nn.Module  # in eval mode, on the CPU
    source: DataSource  # the data with its class selection
    limit: int | None  # the loader's --limit (None: every sample of `source`)
    images: str  # one sentence: how many images, and whether they are the run's own


def open_for_run(
    run_path: str | Path,
    model: str | None = None,
    data: str | None = None,
    *,
    weights: Path | None = None,
    random_init: bool = False,
    pretrained: bool = False,
    image_size: int | None = None,
    classes: Sequence[str] | None = None,
    per_class: int | None = None,
    limit: int | None = None,
) -> Opened:
    """The run, the model and the data, checked to belong together.

    `model` (with `weights`, `pretrained` or `random_init`), `data`, `image_size`, the class
    selection (`classes`, `per_class`, see analysis.data.selection) and `limit` default to those the
    run recorded, so that by default the images are the run's own; random weights and the per-class
    sample are drawn from the run's seed. A missing run folder is an error that names the `collect`
    command that makes it; weights other than the run's are refused.
    """
    path = Path(run_path)
    if not path.exists():
        raise RunFolderError(
            f"run folder {path} does not exist; make it first with "
            f"`se-analysis collect --model {model or 'MODEL'} --data {data or 'DATA'} --out {path}`."
        )
    run = load_run(path, verify=True)
    job = run.meta.job or JobRecord()
    recorded = run.meta.data or DataRecord()
    given = {"data": data, "classes": classes, "per-class": per_class, "limit": limit}
    if model is None:
        model = _recorded(run, run.meta.model, "model")
        if job.weights:
            weights = weights or Path(job.weights)
        random_init = random_init or job.random_init
        pretrained = pretrained or job.pretrained
    data = data or _recorded(run, recorded.spec, "data")
    net, checkpoint, source = open_model_and_data(
        model, data, weights=weights, random_init=random_init, pretrained=pretrained,
        image_size=image_size or job.image_size, seed=job.seed,
        classes=classes or job.classes, per_class=per_class or job.per_class,
    )
    run_gates(run, net)
    weights_file = weights or (checkpoint_paths(model)[0] if checkpoint else None)
    named = pretrained_weights(model, pretrained)
    _check_weights(run, net, weights_file, str(weights_file or (named.spec if named else "random ones")))
    names = list(run.meta.stats.class_names)
    if list(source.class_names) != names:
        raise RunMismatchError(
            f"{path} was collected on other classes than {data}: {len(names)} classes from {names[0]!r}, "
            f"not {source.num_classes} from {source.class_names[0]!r}."
        )
    limit = recorded.limit if limit is None else limit
    own = {"data": recorded.spec, "classes": job.classes, "per-class": job.per_class, "limit": recorded.limit}
    return Opened(run, net, source, limit, _images(run, data, min(len(source.dataset), limit or len(source.dataset)),
                                                    {k: v for k, v in given.items() if v is not None and v != own[k]}))


def _images(run: Run, data: str, images: int, overrides: dict[str, object]) -> str:
    """Which images a command against `run` reads: the run's own, or which options made them others."""
    if not overrides:
        return f"{images:,} images of {data}: the run's own (its data, classes and limit)."
    shown = " ".join(f"--{k} {','.join(v) if isinstance(v, (list, tuple)) else v}" for k, v in overrides.items())
    return f"{images:,} images of {data}, not the run's own {run.meta.stats.samples:,} ({shown} given)."


def _recorded(run: Run, value: str | None, option: str) -> str:
    """A spec the run recorded; RunMismatchError naming the option to pass where it has none."""
    if value is None:
        raise RunMismatchError(f"{run.path}/meta.json records no {option}; pass --{option}.")
    return value


def _check_weights(run: Run, net: nn.Module, weights_file: Path | None, given: str) -> None:
    """RunMismatchError unless `net` holds the run's weights: the state dict's hash where the run
    recorded it, else the weights file's sha256 (runs of older versions). `given` names `net`'s weights."""
    meta = run.meta
    recorded, held = meta.state_sha256, None
    if recorded:
        held = state_sha256(net)
    elif meta.weights_sha256:
        recorded = meta.weights_sha256
        held = sha256(weights_file) if weights_file else None
    if recorded and held != recorded:
        used = meta.weights or (meta.pretrained.spec if meta.pretrained else None) or "random ones"
        raise RunMismatchError(f"{run.path} was collected with other weights ({used}) than {given}.")


def check_same_data(a: Run, b: Run) -> None:
    """RunMismatchError unless two runs read the same data (the same source and selection, as their
    meta.json records it): sample ids then name the same images in both, which comparing the runs'
    gate vectors image by image (analysis.measures.similarity) needs."""
    data_a, data_b = a.document.get("data"), b.document.get("data")
    if data_a is None or data_a != data_b:
        spec_a, spec_b = (d.spec if d else "unrecorded data" for d in (a.meta.data, b.meta.data))
        raise RunMismatchError(f"{a.path} and {b.path} read other data ({spec_a}; {spec_b}), so their sample ids "
                               "do not name the same images.")
