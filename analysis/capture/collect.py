"""One hooked pass over the data that streams every gate into GateStats.

    with GateHooks(model, gates, stats):
        for x, y, ids in loader:
            stats.begin_batch(y, ids)
            model(x)

`collect` runs that loop for you, with AMP, channels_last, inference mode, torch.compile and a
progress bar. Its hooks, like every hook of the library, are `capture.hooks.ForwardHooks`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from analysis.errors import DataError, GateValueError
from analysis.capture.gates import Gate, find_gates
from analysis.capture.hooks import ForwardHooks
from analysis.capture.stats import GateStats, StatsConfig
from analysis.models.precision import autocast


def _as_matrix(gate: Gate, out: Any) -> torch.Tensor:
    """A gate's output as [N, C]: [N, C, 1, 1] is viewed, spatial gates [N, C, H, W] are averaged."""
    if not isinstance(out, torch.Tensor) or out.dim() < 2:
        raise GateValueError(f"gate {gate.name} ({gate.path}) returned {type(out).__name__}, not an [N, C, ...] tensor.")
    if gate.channels is not None and out.shape[1] != gate.channels:
        raise GateValueError(
            f"gate {gate.name} ({gate.path}) has {out.shape[1]} channels, {gate.channels} were declared."
        )
    if out.dim() == 2:
        return out
    if out.shape[2:].numel() == 1:
        return out.reshape(out.shape[0], out.shape[1])
    return out.flatten(2).float().mean(2)


class GateHooks(ForwardHooks):
    """Forward hooks that feed each gate's output to `stats.update`; removed on every exit path.

    Hooks return None, so they never change the model's output. Nesting is safe: each context
    removes only its own handles.
    """

    def __init__(self, model: nn.Module, gates: list[Gate], stats: GateStats) -> None:
        super().__init__(model, gates, self._feed)
        self.stats = stats

    def _feed(self, gate: Gate, output: Any) -> None:
        self.stats.update(gate.name, _as_matrix(gate, output))


def _batches(loader: Iterable) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(x, y, ids) from a loader of (x, y, ids) or (x, y); ids then count up from 0."""
    offset = 0
    for batch in loader:
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise DataError("a data loader must yield (images, labels) or (images, labels, sample_ids).")
        x, y = batch[0], torch.as_tensor(batch[1])
        if len(batch) == 3:
            ids = torch.as_tensor(batch[2])
        else:
            ids = torch.arange(offset, offset + len(y))
        offset += len(y)
        yield x, y, ids


def _learn_channels(model: nn.Module, gates: list[Gate], x: torch.Tensor) -> list[Gate]:
    """Fill in channel counts of user-named gates from one forward pass on the first batch."""
    if all(g.channels is not None for g in gates):
        return gates
    seen: dict[str, int] = {}
    def channels(gate: Gate, output: Any) -> None:
        seen[gate.path] = _as_matrix(gate, output).shape[1]

    with ForwardHooks(model, gates, channels), torch.inference_mode():
        model(x)
    missing = [g.path for g in gates if g.path not in seen]
    if missing:
        raise GateValueError(f"the gate modules {', '.join(missing)} did not run in a forward pass.")
    return [Gate(g.name, g.depth, g.path, seen[g.path]) for g in gates]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model with neither)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def collect(
    model: nn.Module,
    loader: Iterable,
    num_classes: int,
    *,
    gates: list[Gate] | None = None,
    gate_pattern: str | None = None,
    class_names: list[str] | None = None,
    config: StatsConfig | None = None,
    amp: str | None = None,
    channels_last: bool = False,
    compile: bool = False,
    progress: bool = True,
    total: int | None = None,
) -> GateStats:
    """Stream every gate of `model` over `loader` into GateStats on the model's device.

    The loader yields (x, y) or (x, y, sample_ids). The pass runs in eval mode, so that BatchNorm
    uses (and never updates) its running statistics; the model's mode is restored after. `amp` is
    None, "bf16" or "fp16"; `compile` wraps the hooked model in torch.compile. Raises DataError
    for an empty loader, LabelError and GateValueError as described in GateStats.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        return _collect(model, loader, num_classes, gates, gate_pattern, class_names, config, amp, channels_last,
                        compile, progress, total)
    finally:
        for module, training in modes:
            module.training = training


def _collect(
    model: nn.Module, loader: Iterable, num_classes: int, gates: list[Gate] | None, gate_pattern: str | None,
    class_names: list[str] | None, config: StatsConfig | None, amp: str | None, channels_last: bool,
    compile: bool, progress: bool, total: int | None,
) -> GateStats:
    device = model_device(model)
    precision = autocast(device, amp)
    config = config or StatsConfig(num_classes)
    if config.num_classes != num_classes:
        raise ValueError("config.num_classes and num_classes differ")
    gates = gates or find_gates(model, gate_pattern)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    stats: GateStats | None = None
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=total, unit="img", disable=not progress, file=sys.stderr, desc="collect"))
        for x, y, ids in _batches(loader):
            x = x.to(device, non_blocking=True)
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            if stats is None:
                with precision:
                    gates = _learn_channels(model, gates, x)
                stats = GateStats(gates, config, class_names, device)
                stack.enter_context(GateHooks(model, gates, stats))
                forward = torch.compile(model) if compile else model
            stats.begin_batch(y, ids)
            with torch.inference_mode(), precision:
                forward(x)
            bar.update(len(y))
    if stats is None or stats.samples == 0:
        raise DataError("the data source yielded no samples.")
    stats.check()
    return stats
