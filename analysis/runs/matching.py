"""A model and data opened against an existing run folder, checked to belong to it.

`ablate` and `attribute` read a run's statistics (mean gates, channel specificity) and apply them
to a model. Numbers from another model, other weights or other classes would be silently wrong,
so everything is checked here first: the gates (names, module paths, channels), the weights
(sha256, where the run recorded one) and the class names.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from analysis.models.checkpoint import checkpoint_paths
from analysis.data import DataSource
from analysis.errors import RunFolderError, RunMismatchError
from analysis.capture.gates import Gate, find_gates
from analysis.files import sha256
from analysis.models.spec import open_model_and_data
from analysis.runs.folder import Run, load_run


def _summary(gates: list[Gate]) -> str:
    channels = sum(g.channels or 0 for g in gates)
    return f"{len(gates)} gates {gates[0].name}..{gates[-1].name} with {channels} channels"


def run_gates(run: Run, model: nn.Module) -> list[Gate]:
    """The run's gates, checked to be the gates of `model`: same names, module paths and channels.

    A run made with `--gates REGEX` is matched with the same pattern (channels then come from the
    run). Raises RunMismatchError.
    """
    recorded = [Gate(**g) for g in run.meta["stats"]["gates"]]
    found = find_gates(model, (run.meta.get("job") or {}).get("gates"))
    same = [(g.name, g.path) for g in found] == [(g.name, g.path) for g in recorded] and all(
        f.channels in (None, r.channels) for f, r in zip(found, recorded)
    )
    if not same:
        raise RunMismatchError(
            f"{run.path} is a run of another model: it holds {_summary(recorded)}, the model has {_summary(found)}."
        )
    return recorded


def open_for_run(
    run_path: str | Path,
    model: str,
    data: str,
    *,
    weights: Path | None = None,
    random_init: bool = False,
    image_size: int | None = None,
) -> tuple[Run, nn.Module, DataSource]:
    """(run, model in eval mode on the CPU, data source), checked to belong together.

    A missing run folder is an error that names the `collect` command that makes it.
    """
    path = Path(run_path)
    if not path.exists():
        raise RunFolderError(
            f"run folder {path} does not exist; make it first with "
            f"`se-analysis collect --model {model} --data {data} --out {path}`."
        )
    run = load_run(path)
    seed = (run.meta.get("job") or {}).get("seed", 0)  # random weights are the run's only when drawn alike
    net, checkpoint, source = open_model_and_data(
        model, data, weights=weights, random_init=random_init, image_size=image_size, seed=seed
    )
    run_gates(run, net)
    weights_file = weights or (checkpoint_paths(model)[0] if checkpoint else None)
    recorded = run.meta.get("weights_sha256")
    if recorded and (weights_file is None or sha256(weights_file) != recorded):
        raise RunMismatchError(
            f"{path} was collected with the weights {run.meta.get('weights')}, not {weights_file or 'random ones'}."
        )
    names = run.meta["stats"]["class_names"]
    if list(source.class_names) != names:
        raise RunMismatchError(
            f"{path} was collected on other classes than {data}: {len(names)} classes from {names[0]!r}, "
            f"not {source.num_classes} from {source.class_names[0]!r}."
        )
    return run, net, source
