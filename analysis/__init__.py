"""se-analysis: where do Squeeze-and-Excitation gates become class-specific?

    model = analysis.open_model("timm:seresnet50", pretrained=True)   # or any nn.Module of yours
    source = analysis.open_data("imagefolder:/data/imagenet/val")
    stats = analysis.collect(model, analysis.make_loader(source, 128), source.num_classes)
    tables = analysis.tables(stats)          # tables.blocks, .channels, .class_means: pandas; .onset
    run = analysis.save_run(stats, "runs/x") # the same, written as a run folder; analysis.load_run("runs/x")

Each name is imported from its module on first use, so that `import analysis` costs almost nothing
beyond Python itself: a notebook pays for torchvision, scipy, captum or matplotlib only when it calls
what needs them. The exceptions are here at once, to be caught without importing anything.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING, Any

from analysis.errors import (
    AnalysisError,
    CheckpointError,
    DataError,
    DistributedError,
    GateValueError,
    InterventionError,
    LabelError,
    ModelSpecError,
    NoGatesError,
    OptionError,
    RunFolderError,
    RunMismatchError,
    StatsMismatchError,
    StatsStateError,
    TableSchemaError,
)

_LAZY = {  # public name -> the module that defines it
    "open_model": "analysis.models.spec",
    "build_model": "analysis.models.architectures",
    "se_resnet": "analysis.models.architectures",
    "open_data": "analysis.data.source",
    "DataSource": "analysis.data.source",
    "make_loader": "analysis.data.source",
    "find_gates": "analysis.capture.gates",
    "Gate": "analysis.capture.gates",
    "collect": "analysis.capture.collect",
    "GateHooks": "analysis.capture.collect",
    "GateStats": "analysis.capture.stats",
    "StatsConfig": "analysis.capture.config",
    "tables": "analysis.measures.tables",
    "Tables": "analysis.measures.tables",
    "save_run": "analysis.jobs",
    "load_run": "analysis.runs.folder",
    "Run": "analysis.runs.folder",
    "ablate": "analysis.experiments.interventions",
    "attribute": "analysis.experiments.attributions",
}
_MODULES = ("measures",)  # subpackages offered as attributes

__all__ = sorted([
    *_LAZY, *_MODULES,
    "AnalysisError", "CheckpointError", "DataError", "DistributedError", "GateValueError", "InterventionError",
    "LabelError", "ModelSpecError", "NoGatesError", "OptionError", "RunFolderError", "RunMismatchError",
    "StatsMismatchError", "StatsStateError", "TableSchemaError",
])


def __getattr__(name: str) -> Any:
    """The public name `name`, imported from its module the first time it is asked for (PEP 562)."""
    if name in _LAZY:
        value = getattr(_importlib.import_module(_LAZY[name]), name)
    elif name in _MODULES:
        value = _importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups find it directly
    return value


def __dir__() -> list[str]:
    return list(__all__)


if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ imports these
    from analysis import measures
    from analysis.capture.collect import GateHooks, collect
    from analysis.capture.config import StatsConfig
    from analysis.capture.gates import Gate, find_gates
    from analysis.capture.stats import GateStats
    from analysis.data.source import DataSource, make_loader, open_data
    from analysis.experiments.attributions import attribute
    from analysis.experiments.interventions import ablate
    from analysis.jobs import save_run
    from analysis.measures.tables import Tables, tables
    from analysis.models.architectures import build_model, se_resnet
    from analysis.models.spec import open_model
    from analysis.runs.folder import Run, load_run
