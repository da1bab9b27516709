"""One hooked pass over the data that streams every gate into GateStats.

    with GateHooks(model, gates, stats):
        for x, y, ids in loader:
            stats.begin_batch(y, ids)
            model(x)
            stats.end_batch()
    stats.finish()

`collect` runs that loop for you, with AMP, channels_last, inference mode, torch.compile and a
progress bar. Its hooks, like every hook of the library, are `capture.hooks.ForwardHooks`.

The gate that reaches the statistics is computed in float32 even when the network runs under AMP:
bf16's step at 0.5 (0.0039) is larger than the spread of many trained gates, and the excitation's
bf16 matmuls add rounding noise larger than that spread to the pre-activation. So a pre-hook on
each SE block of a known type or found by tracing (`gates.squeeze_block`) pools the block input's
channel means in float32 once: they are the squeezed input z (`stats.inputs`), and under autocast
the block runs once more in float32, outside autocast, on them as a 1x1 map, so that only the
excitation is recomputed; a block whose gate reads more than the channel means (CBAM's maxima,
gather-excite's positions, the NoSqueeze ablation) runs again on its upcast input instead. Only that
run's gate reaches the statistics; the network's own forward is unchanged. Without autocast, or for
a gate whose block is unknown (--gates REGEX), a pre-hook on a gate module of a known type applies
its nonlinearity (`capture.adapters`) to the upcast pre-activation; other gates give their output
as it is. A functional gate (a `torch.sigmoid` call, found by tracing) is seen at its call site by
`calls.CallCounter`, just before the call, and treated like a gate module of a known type.
`gate_precision` says which was done, per gate.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from analysis.errors import DataError, GateValueError, OptionError
from analysis.capture.adapters import Nonlinearity, module_nonlinearity
from analysis.capture.calls import CallCounter, Frame, evaluating, site_nonlinearity, subtrees
from analysis.capture.config import Gather
from analysis.capture.gates import Block, Gate, find_gates, squeeze_block, unwrap
from analysis.capture.hooks import ForwardHooks, run_gate
from analysis.capture.tracing import channel_view
from analysis.capture.stats import GateStats, StatsConfig
from analysis.models.controls import CONTROL_SEEDS, CONTROLS, untrained, untrained_seeds
from analysis.models.precision import autocast


def _as_matrix(gate: Gate, out: Any) -> torch.Tensor:
    """A gate's output as [N, C]: [N, C, 1, 1] and [N, 1, C] are viewed, spatial gates [N, C, H, W]
    are averaged over positions."""
    if not isinstance(out, torch.Tensor) or out.dim() < 2:
        raise GateValueError(f"gate {gate.name} ({gate.path}) returned {type(out).__name__}, not an [N, C, ...] tensor.")
    flat = channel_view(out, gate.channels or out.shape[1])
    if flat is not None:
        return flat
    if gate.channels is not None and out.shape[1] != gate.channels:
        raise GateValueError(
            f"gate {gate.name} ({gate.path}) has {out.shape[1]} channels, {gate.channels} were declared."
        )
    return out.flatten(2).float().mean(2)


def _nonlinearity(model: nn.Module, gate: Gate) -> Nonlinearity | None:
    """The gate's nonlinearity (its float32 function), or None for a module of unknown type."""
    if gate.call is not None:
        return site_nonlinearity(gate.call)
    try:
        return module_nonlinearity(model.get_submodule(gate.path))
    except AttributeError:  # no such module: ForwardHooks says so
        return None


class GateHooks(ForwardHooks):
    """Hooks that feed each gate (in float32, see the module docstring) to `stats.update`, and each
    SE block's squeezed input to `stats.inputs`; removed on every exit path.

    Hooks return None, so they never change the model's output. Nesting is safe: each context
    removes only its own handles.
    """

    def __init__(self, model: nn.Module, gates: list[Gate], stats: GateStats) -> None:
        root = unwrap(model)
        self.blocks = {g.name: squeeze_block(model, g) for g in gates}
        self.fp32 = {g.name: n.function for g in gates if (n := _nonlinearity(root, g))}
        modules = [g for g in gates if g.call is None]
        before = [(g.path, g, self._feed_fp32) for g in modules if g.name in self.fp32]
        before += [(block.path, g, self._block_input) for g in gates if (block := self.blocks[g.name])]
        super().__init__(model, [g for g in gates if g.name not in self.fp32], self._feed, tuple(before))
        self.stats = stats
        self.block_modules = {name: root.get_submodule(b.path) for name, b in self.blocks.items() if b}
        self.sites: dict[tuple[str, str], list[Gate]] = {}
        for g in sorted((g for g in gates if g.call is not None), key=lambda g: g.firing):
            self.sites.setdefault((g.path, g.call), []).append(g)
        roots = {path for path, _ in self.sites}
        self.calls = (CallCounter(subtrees(dict(root.named_modules()), roots), before=self._feed_call, root=root)
                      if roots else None)

    def __enter__(self) -> GateHooks:
        super().__enter__()
        if self.calls is not None:
            try:
                self.calls.__enter__()
            except BaseException:
                self.remove()
                raise
        return self

    def remove(self) -> None:
        """Remove this context's hooks, the call sites' ones too."""
        if self.calls is not None:
            self.calls.__exit__()
        super().remove()

    def _feed_call(self, frame: Frame, site: str, args: tuple) -> None:
        gates = self.sites.get((frame.path, site))
        if gates is None:
            return
        if self.rerun is None:
            self._feed_fp32(run_gate(frame.path, frame.run, gates), args)
        elif any(g is self.rerun for g in gates):
            self._feed_fp32(self.rerun, args)

    def _rerun_feeds(self, gate: Gate, t: torch.Tensor) -> bool:
        """Whether this call of the gate is not the one to record: under autocast, the float32
        re-run of its block records it instead."""
        return self.blocks[gate.name] is not None and torch.is_autocast_enabled(t.device.type)

    def _feed(self, gate: Gate, output: Any) -> None:
        if not (isinstance(output, torch.Tensor) and self._rerun_feeds(gate, output)):
            self.stats.update(gate.name, _as_matrix(gate, output))

    def _feed_fp32(self, gate: Gate, inputs: tuple) -> None:
        pre = inputs[0]
        if self._rerun_feeds(gate, pre):
            return
        with torch.autocast(pre.device.type, enabled=False):
            self.stats.update(gate.name, _as_matrix(gate, self.fp32[gate.name](pre.float())))

    def _block_input(self, gate: Gate, inputs: tuple) -> None:
        if self.rerun is not None:  # this block's own pre-hook, inside its re-run
            return
        x, block = inputs[0], self.blocks[gate.name]
        amp = torch.is_autocast_enabled(x.device.type)
        if self.stats.inputs is None and not amp:
            return
        z = x.mean(block.dims, keepdim=True, dtype=torch.float32)  # one pooling: z, and the gate's re-run
        if self.stats.inputs is not None:
            self.stats.inputs.update(gate.name, _as_matrix(gate, z))
        if amp:
            self._rerun(gate, block, z if block.pooled else x.float())

    def _rerun(self, gate: Gate, block: Block, x: torch.Tensor) -> None:
        """Run the gate's block once more on x in float32, outside autocast; its gate hook records."""
        self.rerun = gate
        if self.calls is not None:
            self.calls.paused = True
        try:
            with torch.autocast(x.device.type, enabled=False):
                self.block_modules[gate.name](x)
        finally:
            self.rerun = None
            if self.calls is not None:
                self.calls.paused = False


def gate_precision(model: nn.Module, gates: list[Gate], amp: str | None) -> dict[str, str]:
    """Per gate, how the values in its statistics were obtained (recorded in meta.json)."""
    root = unwrap(model)
    out = {}
    for g in gates:
        block, known = squeeze_block(model, g), _nonlinearity(root, g)
        if amp and block:
            start = "its input's channel means, pooled in float32" if block.pooled else "the upcast input"
            out[g.name] = f"its SE block {block.path} re-run in float32 on {start}, outside {amp} autocast"
        elif known:
            out[g.name] = f"float32 {known.name} of the upcast pre-activation, outside autocast"
        else:
            out[g.name] = f"the output of {type(root.get_submodule(g.path)).__name__} as computed (unknown gate type)"
    return out


def new_stats(model: nn.Module, gates: list[Gate], config: StatsConfig, class_names: list[str] | None,
              device: torch.device, inputs: bool, gather: Gather | None) -> GateStats:
    """Empty statistics of `gates`; with `inputs`, beside them those of the squeezed inputs z
    (`StatsConfig.squeezed`) when every gate has a known SE block whose input can be pooled."""
    squeezed = None
    if inputs and all(squeeze_block(model, g) for g in gates):
        squeezed = GateStats(gates, config.squeezed(), class_names, device, gather=gather)
    return GateStats(gates, config, class_names, device, inputs=squeezed, gather=gather)


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
        seen[gate.name] = _as_matrix(gate, output).shape[1]

    with ForwardHooks(model, gates, channels), torch.inference_mode():
        model(x)
    missing = [g.path for g in gates if g.name not in seen]
    if missing:
        raise GateValueError(f"the gate modules {', '.join(missing)} did not run in a forward pass.")
    return [dataclasses.replace(g, channels=seen[g.name]) for g in gates]


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
    inputs: bool = True,
    gather: Gather | None = None,
    control: str | None = None,
    control_seeds: int = CONTROL_SEEDS,
) -> GateStats:
    """Stream every gate of `model` over `loader` into GateStats on the model's device.

    With `control="untrained"`, the same pass follows for `control_seeds` untrained copies of the
    model (analysis.models.controls: each module's own init, BatchNorm statistics recomputed on the
    loader's first samples), into `stats.controls["untrained"]` by weight seed, with
    `control_config`'s statistics; the loader must be readable again (a DataLoader or a list).
    Without a control, `save_run` leaves the answers that need one undetermined.

    The loader yields (x, y) or (x, y, sample_ids). The pass runs in eval mode, so that BatchNorm
    uses (and never updates) its running statistics; the model's mode is restored after. `amp` is
    None, "bf16" or "fp16"; `compile` wraps the hooked model in torch.compile. Without `gates`,
    `find_gates` finds them (by type, else by tracing the first batch's first two images). With
    `inputs`, the squeezed inputs of the SE blocks are collected into `stats.inputs` too (see
    `new_stats`). `gather` shares the calibration sample across processes (GateStats). Raises
    DataError for an empty loader, NoGatesError, LabelError and GateValueError as described in GateStats.
    """
    if control is not None and control not in CONTROLS:
        raise OptionError(f"{control!r} is not a control; controls: {', '.join(CONTROLS)}.")
    if control is not None and iter(loader) is loader:
        raise DataError("controls need a loader that can be read again (a DataLoader or a list), not an iterator.")
    with evaluating(model):
        stats = _collect(model, loader, num_classes, gates, gate_pattern, class_names, config, amp, channels_last,
                         compile, progress, total, inputs, gather)
    for seed in untrained_seeds(stats.config.seed, control_seeds) if control is not None else []:
        fresh = untrained(model, seed, loader).to(model_device(model))
        stats.controls.setdefault(control, {})[seed] = collect(
            fresh, loader, num_classes, gates=stats.gates, class_names=class_names, config=control_config(stats.config),
            amp=amp, channels_last=channels_last, progress=progress, total=total, inputs=False)
    return stats


def control_config(config: StatsConfig) -> StatsConfig:
    """What a control pass keeps: the moments of one shard (the band holds each seed's point value,
    never resampled), the fewest bins; no permutation null, top samples or reservoir (so no probe:
    probe_untrained is NaN; three probes per block and seed would cost more than the passes), the
    same classes and seed."""
    return dataclasses.replace(config, shards=1, bins=2, skip=tuple({*config.skip, "null", "top", "reservoir"}))


def compiled(model: nn.Module) -> Callable[[torch.Tensor], Any]:
    """`model` under torch.compile, for a model that carries hooks (GateHooks): compiled as a frame
    of its own with the module hooks guarded, so that it never reuses a graph compiled for a copy
    of the model without (or with other) hooks, nor lends its graph to one. By default dynamo does
    not guard module hooks (`skip_nnmodule_hook_guards`), and a graph compiled for a hook-free
    copy of one architecture ran the hooked copy with its hooks skipped."""
    def hooked(x: torch.Tensor) -> Any:
        return model(x)

    graph = torch.compile(hooked)

    def forward(x: torch.Tensor) -> Any:
        with torch._dynamo.config.patch(skip_nnmodule_hook_guards=False):
            return graph(x)

    return forward


def _collect(
    model: nn.Module, loader: Iterable, num_classes: int, gates: list[Gate] | None, gate_pattern: str | None,
    class_names: list[str] | None, config: StatsConfig | None, amp: str | None, channels_last: bool,
    compile: bool, progress: bool, total: int | None, inputs: bool, gather: Gather | None,
) -> GateStats:
    """The hooked pass of `collect`, with the model in eval mode."""
    device = model_device(model)
    precision = autocast(device, amp)
    config = config or StatsConfig(num_classes)
    if config.num_classes != num_classes:
        raise ValueError("config.num_classes and num_classes differ")
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
                gates = gates or find_gates(model, gate_pattern, example=x[:2])
                with precision:
                    gates = _learn_channels(model, gates, x)
                stats = new_stats(model, gates, config, class_names, device, inputs, gather)
                stack.enter_context(GateHooks(model, gates, stats))
                forward = compiled(model) if compile else model
            stats.begin_batch(y, ids)
            with torch.inference_mode(), precision:
                forward(x)
            stats.end_batch()
            bar.update(len(y))
    if stats is None or stats.samples == 0:
        raise DataError("the data source yielded no samples.")
    stats.finish()
    stats.check()
    return stats
