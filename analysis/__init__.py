"""se-analysis: where do Squeeze-and-Excitation gates become class-specific?

    gates = analysis.find_gates(model)
    stats = analysis.collect(model, loader, num_classes=10)
    analysis.save_run(stats, "runs/x", meta={...})
    run = analysis.load_run("runs/x")      # run.blocks, run.channels: pandas tables
"""

from analysis import measures
from analysis.capture.collect import GateHooks, collect
from analysis.errors import (
    AnalysisError,
    CheckpointError,
    DataError,
    GateValueError,
    LabelError,
    ModelSpecError,
    NoGatesError,
    RunFolderError,
    StatsMismatchError,
)
from analysis.capture.gates import Gate, find_gates
from analysis.models.architectures import build_model, se_resnet
from analysis.jobs import save_run
from analysis.runs.folder import Run, load_run
from analysis.capture.stats import GateStats, StatsConfig

__all__ = [
    "AnalysisError",
    "CheckpointError",
    "DataError",
    "Gate",
    "GateHooks",
    "GateStats",
    "GateValueError",
    "LabelError",
    "ModelSpecError",
    "NoGatesError",
    "RunFolderError",
    "StatsConfig",
    "StatsMismatchError",
    "Run",
    "load_run",
    "save_run",
    "build_model",
    "collect",
    "find_gates",
    "measures",
    "se_resnet",
]
