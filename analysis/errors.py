"""The project's exceptions: one base class, one subclass per kind of bad input.

The CLI catches `AnalysisError` and prints its message as one sentence with a non-zero exit,
so every message here must make sense to a user on its own.
"""

from collections.abc import Iterable


def first_line(error: BaseException) -> str:
    """The one line a user needs from an error. An AnalysisError raised in a DataLoader worker
    arrives wrapped in a traceback whose line `analysis.errors.NAME: message` holds the message;
    any other error (torch's collectives, say) says what happened on its first non-empty line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(f"{__name__}.") and ": " in line:
            return line.split(": ", 1)[1]
    return lines[0] if lines else type(error).__name__


def listed(items: Iterable[object], shown: int = 5) -> str:
    """Items for a message: the first `shown`, then how many more, so that a sentence stays short
    however long the list ("'a', 'b', 'c' and 4,997 more")."""
    items = list(items)
    head = ", ".join(map(str, items[:shown]))
    return head if len(items) <= shown else f"{head} and {len(items) - shown:,} more"


class AnalysisError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class OptionError(AnalysisError):
    """An option or setting is out of its range, names no known device, or names an output that cannot be written."""


class NoGatesError(AnalysisError):
    """The model holds no SE gate that the toolkit recognises."""


class GateValueError(AnalysisError):
    """Gate activations were NaN/inf or outside their declared range."""


class LabelError(AnalysisError):
    """A label is outside 0..num_classes-1."""


class DataError(AnalysisError):
    """A data source is missing, unreadable, empty or malformed."""


class ModelSpecError(AnalysisError):
    """A model specification or weights file cannot be turned into a model."""


class CheckpointError(AnalysisError):
    """A checkpoint file is missing, truncated, unsafe or does not match its architecture."""


class RunFolderError(AnalysisError):
    """A run folder is missing, incomplete, of another version, or would overwrite results."""


class StatsMismatchError(AnalysisError):
    """Two GateStats cannot be merged (different gates, classes, bins or seeds)."""


class StatsStateError(AnalysisError):
    """GateStats read with a batch open or samples waiting for calibration, or asked for a statistic it left out."""


class DistributedError(AnalysisError):
    """A distributed collection was not started by torchrun, or its processes could not work together."""


class RunMismatchError(AnalysisError):
    """A run folder was made from another model, other weights or other classes than those given."""


class InterventionError(AnalysisError):
    """An intervention or block group cannot be applied to the model and run given."""


class TableSchemaError(AnalysisError):
    """A table lacks a column of its schema, holds one the schema does not know, or a column of another dtype."""
