"""Find every SE gate of a model and give it a paper-style name.

A gate is the module whose output is the per-sample, per-channel multiplier `s` of one SE block.
SE blocks are found by type through the adapter registry (`capture.adapters`: SE class -> its gate
submodule), never by attribute name, because blocks without SE often hold an `nn.Identity` under the
same name. An SE class of your own joins by declaring its gate submodule as a class attribute,
`se_gate = "gate"` (the project's own blocks in analysis.models do), so this stage never imports a
model zoo; a library class by `adapters.register_gate`.

Names follow the SE paper where the model has stages: `SE_{stage}_{block}`, numbering stages as
ResNet does (the stem is stage 1, so the first stage of blocks is stage 2: SE-ResNet-50 has
SE_2_1..SE_5_3). Otherwise `SE_{i}` in forward order. The rules are in `_STAGE_RULES`.

A gate module that runs k times in one forward pass (one activation module shared by several SE
blocks, a block whose weights are shared, a --gates pattern naming a module used twice) is k gates,
one per run (`Gate.firing`), found by one forward pass on an example batch: each run is recorded,
none overwrites another. Without an example, gates that are one shared module are refused, and a
run beyond those found is refused when it happens (`capture.hooks`).

SE blocks of no known type (an nn.Sequential ending in a sigmoid, `torch.sigmoid` in a forward, ECA,
CBAM's channel attention, gather-excite) are found by one traced forward pass on an example input
(`capture.tracing`) when the registry finds nothing, or when asked (`traced=True`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from analysis.capture.adapters import GATE_DECLARATION, adapter_of, gate_adapters
from analysis.capture.calls import CallCounter, Frame, evaluating
from analysis.capture.names import index_name, run_name, stage_name
from analysis.capture.tracing import KINDS, trace
from analysis.errors import GateValueError, NoGatesError, OptionError


@dataclass(frozen=True)
class Gate:
    """One SE gate. `depth` is its 1-based position in forward order; `path` the hooked module;
    `firing` which of that module's runs in one forward pass it is (0 unless the module runs
    several times, see the module docstring).

    Traced gates (capture.tracing) also say their `kind`; a functional one (a `torch.sigmoid` call,
    say) has `call`, its site name inside the module `path` (capture.calls); `block` is the module
    whose input is the gated feature map, when one computes the gate (else None), and `pooled`
    whether that block's gate reads its input only through the channel means. Gates known by type
    find their block, and whether it is pooled, by type (`squeeze_block`).
    """

    name: str
    depth: int
    path: str
    channels: int | None
    kind: str = "se"
    call: str | None = None
    block: str | None = None
    firing: int = 0
    pooled: bool = False

    def __post_init__(self) -> None:
        if not self.name or self.depth < 1 or self.kind not in KINDS or self.firing < 0:
            raise ValueError(f"bad gate description {self!r}")
        if self.channels is not None and self.channels < 1:
            raise ValueError(f"gate {self.name} must have at least one channel")


@dataclass(frozen=True)
class Block:
    """The SE block computing a gate: its path, the spatial dims its squeeze averages, and whether
    its gate reads its input only through those channel means (then the float32 re-run under AMP
    starts from them)."""

    path: str
    dims: tuple[int, int]
    pooled: bool


def squeeze_block(model: nn.Module, gate: Gate) -> Block | None:
    """The SE block that owns `gate`, or None when the gate's parent module is no SE block we know
    (gates named by --gates REGEX)."""
    if gate.block is not None:
        return Block(gate.block, (2, 3), gate.pooled)
    block_path, _, attr = gate.path.rpartition(".")
    block = unwrap(model).get_submodule(block_path)
    adapter = adapter_of(block)
    if adapter is None or adapter.gate != attr:
        return None
    return Block(block_path, adapter.squeeze_dims(), adapter.reads_means(block))


# (path pattern of the SE block, stage number of index 0, block number of index 0)
_STAGE_RULES: list[tuple[re.Pattern[str], int, int]] = [
    (re.compile(r"(?:^|\.)layer(\d+)\.(\d+)\."), 1, 1),  # ResNet families: layer1 is conv2_x
    (re.compile(r"(?:^|\.)s(\d+)\.b(\d+)\."), 1, 0),  # timm RegNet: s1.b1, both 1-based
    (re.compile(r"(?:^|\.)trunk_output\.block(\d+)\.block\d+-(\d+)\."), 1, 1),  # torchvision RegNet
    (re.compile(r"(?:^|\.)blocks\.(\d+)\.(\d+)\."), 2, 1),  # timm EfficientNet/MobileNet: stem outside
    (re.compile(r"(?:^|\.)stages\.(\d+)\.(\d+)\."), 2, 1),  # timm ByobNet (seresnet33ts): stem outside
    (re.compile(r"(?:^|\.)features\.(\d+)\.(\d+)\."), 1, 1),  # torchvision EfficientNet: features.0 = stem
]


def gate_names(paths: list[str]) -> list[str]:
    """Paper-style names for gate module paths given in forward order.

    The first stage rule that matches every path and gives distinct names to distinct paths wins;
    else SE_1, SE_2, ... A path given k > 1 times (k runs of one module) has names NAME.1 .. NAME.k.
    """
    distinct = list(dict.fromkeys(paths))
    base = dict(zip(distinct, _distinct_names(distinct)))
    total, seen = {p: paths.count(p) for p in distinct}, dict.fromkeys(distinct, 0)
    names = []
    for p in paths:
        seen[p] += 1
        names.append(base[p] if total[p] == 1 else run_name(base[p], seen[p]))
    return names


def _distinct_names(paths: list[str]) -> list[str]:
    for pattern, stage0, block0 in _STAGE_RULES:
        matches = [pattern.search(p + ".") for p in paths]
        if all(matches):
            names = [stage_name(int(m[1]) + stage0, int(m[2]) + block0) for m in matches]
            if len(set(names)) == len(names):
                return names
    return [index_name(i + 1) for i in range(len(paths))]


def _out_channels(se_block: nn.Module) -> int | None:
    """Channels of a gate: the outputs of the last conv/linear layer inside its SE block."""
    last = None
    for m in se_block.modules():
        if isinstance(m, nn.Conv2d):
            last = m.out_channels
        elif isinstance(m, nn.Linear):
            last = m.out_features
    return last


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module behind torch.compile, DataParallel and DistributedDataParallel wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def find_gates(model: nn.Module, pattern: str | None = None, *, example: torch.Tensor | None = None,
               traced: bool = False) -> list[Gate]:
    """Every SE gate of `model` in forward (registration) order.

    With `pattern`, the gates are instead the modules whose path matches that regular expression
    (re.search); their channel count is learnt from the first batch. Otherwise SE blocks are found
    by type; when none is (or with `traced`), by one forward pass on `example`, a small batch
    (capture.tracing). With `example`, a gate module that runs several times in a forward pass on it
    is one gate per run (module docstring). Raises NoGatesError, GateValueError for one module shared
    by several gates without `example`, and OptionError for `traced` without `example`.
    """
    model = unwrap(model)
    if pattern is not None:
        return _named(_each_run(model, _by_pattern(model, pattern), example))
    found, tried = _by_type(model)
    if traced and example is None:
        raise OptionError("tracing the gates needs an example input: pass example=a small batch.")
    if found and not traced:
        return _named(_each_run(model, found, example))
    if example is not None:
        sites = trace(model, example)
        if sites:
            names = gate_names([s.owner for s in sites])
            return [Gate(name, i + 1, s.path, s.channels, s.kind, s.call, s.block, s.firing, s.pooled)
                    for i, (name, s) in enumerate(zip(names, sites))]
        tried += ", nor a sigmoid or hard sigmoid multiplying a feature map channel-wise in a traced forward pass"
    raise _no_gates(model, tried)


def _no_gates(model: nn.Module, tried: str) -> NoGatesError:
    return NoGatesError(f"{type(model).__name__} has no SE gate: looked for {tried}; from Python, "
                        "find_gates(model, example=x) traces one forward pass of a small batch x for gates however "
                        "written, and find_gates(model, pattern) or --gates REGEX names the gate modules yourself.")


def _named(found: list[tuple[str, int | None, int]]) -> list[Gate]:
    names = gate_names([p for p, _, _ in found])
    return [Gate(name, i + 1, path, ch, firing=firing) for i, (name, (path, ch, firing)) in enumerate(zip(names, found))]


def _each_run(model: nn.Module, found: list[tuple[str, int | None]],
              example: torch.Tensor | None) -> list[tuple[str, int | None, int]]:
    """(path, channels, firing) of each run of the gate modules `found` in one forward pass on
    `example`, in the order of `found`; a run of a module that several paths name (an activation
    shared by several SE blocks) goes to the path under the innermost running parent. Without
    `example`, each path once (firing 0); several paths naming one module are then refused."""
    modules = {path: model.get_submodule(path) for path, _ in found}
    naming: dict[int, list[str]] = {}  # id(module) -> the found paths naming it
    for path, module in modules.items():
        naming.setdefault(id(module), []).append(path)
    if example is None:
        shared = next((paths for paths in naming.values() if len(paths) > 1), None)
        if shared:
            raise GateValueError(f"the gates {', '.join(shared)} are one module shared by several blocks: "
                                 "give an example batch (find_gates(model, example=x)) to tell their runs apart.")
        return [(path, ch, 0) for path, ch in found]
    runs: dict[str, list[int]] = {path: [] for path in modules}
    parents = {path.rpartition(".")[0] for path in modules}

    def returned(frame: Frame, output: Any) -> None:
        paths = naming.get(id(frame.module), [])
        if paths:
            running = [f.path for f in reversed(counter.stack)]
            runs[next((p for f in running for p in paths if p.rpartition(".")[0] == f), paths[0])].append(frame.run)

    tracked = {p: m for p, m in model.named_modules() if id(m) in naming or p in parents}
    with evaluating(model), torch.no_grad(), CallCounter(tracked, returned=returned) as counter:
        model(example)
    return [(path, ch, firing) for path, ch in found for firing in runs[path] or [0]]


def _by_pattern(model: nn.Module, pattern: str) -> list[tuple[str, int | None]]:
    """(path, None) of the modules whose path matches `pattern`; raises NoGatesError."""
    try:
        regex = re.compile(pattern)
    except re.error as e:
        raise NoGatesError(f"the gate pattern {pattern!r} is not a valid regular expression: {e}.") from None
    found = [(path, None) for path, _ in model.named_modules() if path and regex.search(path)]
    if not found:
        raise _no_gates(model, f"module paths matching {pattern!r}")
    return found


def _by_type(model: nn.Module) -> tuple[list[tuple[str, int | None]], str]:
    """(path, channels) of the gate module of every SE block of a known type, and what was looked for."""
    found: list[tuple[str, int | None]] = []
    for path, module in model.named_modules():
        adapter = adapter_of(module)
        if adapter is not None and isinstance(getattr(module, adapter.gate, None), nn.Module):
            found.append((f"{path}.{adapter.gate}" if path else adapter.gate, _out_channels(module)))
    tried = (f"SE classes declaring {GATE_DECLARATION!r} and SE modules of types "
             + ", ".join(f"{a.se_class.__module__}.{a.se_class.__qualname__}" for a in gate_adapters()))
    return found, tried
