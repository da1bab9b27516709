"""Find every SE gate of a model and give it a paper-style name.

A gate is the module whose output is the per-sample, per-channel multiplier `s` of one SE block.
SE blocks are found by type through one adapter table (SE class -> its gate submodule), never by
attribute name, because blocks without SE often hold an `nn.Identity` under the same name. An SE
class of your own joins the table by declaring its gate submodule as a class attribute,
`se_gate = "gate"` (the project's own blocks in analysis.models do), so this stage never imports a
model zoo.

Names follow the SE paper where the model has stages: `SE_{stage}_{block}`, numbering stages as
ResNet does (the stem is stage 1, so the first stage of blocks is stage 2: SE-ResNet-50 has
SE_2_1..SE_5_3). Otherwise `SE_{i}` in forward order. The rules are in `_STAGE_RULES`.

SE blocks of no known type (an nn.Sequential ending in a sigmoid, `torch.sigmoid` in a forward, ECA,
CBAM's channel attention, gather-excite) are found by one traced forward pass on an example input
(`capture.tracing`) when the table finds nothing, or when asked (`traced=True`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from analysis.capture.names import index_name, stage_name
from analysis.capture.tracing import KINDS, trace
from analysis.errors import NoGatesError, OptionError

GATE_DECLARATION = "se_gate"  # class attribute naming an SE class's gate submodule


@dataclass(frozen=True)
class Gate:
    """One SE gate. `depth` is its 1-based position in forward order; `path` the hooked module.

    Traced gates (capture.tracing) also say their `kind`; a functional one (a `torch.sigmoid` call,
    say) has `call`, its site name inside the module `path` (capture.calls); `block` is the module
    whose input is the gated feature map, when one computes the gate (else None; gates known by type
    find theirs by type, see `squeeze_block`).
    """

    name: str
    depth: int
    path: str
    channels: int | None
    kind: str = "se"
    call: str | None = None
    block: str | None = None

    def __post_init__(self) -> None:
        if not self.name or self.depth < 1 or self.kind not in KINDS:
            raise ValueError(f"bad gate description {self!r}")
        if self.channels is not None and self.channels < 1:
            raise ValueError(f"gate {self.name} must have at least one channel")


def _adapter_table() -> list[tuple[type, str]]:
    """(SE module class, attribute holding its gate activation) for every library we know."""
    table: list[tuple[type, str]] = []
    try:
        from torchvision.ops import SqueezeExcitation

        table.append((SqueezeExcitation, "scale_activation"))
    except ImportError:
        pass
    try:
        from timm.layers import squeeze_excite as tse
        from timm.models import _efficientnet_blocks as teb
        from timm.models import senet as tsenet

        table += [
            (tse.SEModule, "gate"),
            (tse.EffectiveSEModule, "gate"),
            (tse.SqueezeExciteCl, "gate"),
            (teb.SqueezeExcite, "gate"),
            (tsenet.SEModule, "sigmoid"),
        ]
    except ImportError:
        pass
    return table


def squeeze_block(model: nn.Module, gate: Gate) -> tuple[str, tuple[int, int]] | None:
    """(path of the SE block that owns `gate`, the spatial dims of its input to average), or None
    when the gate's parent module is no SE block we know (gates named by --gates REGEX)."""
    if gate.block is not None:
        return gate.block, (2, 3)
    block_path, _, attr = gate.path.rpartition(".")
    block = unwrap(model).get_submodule(block_path)
    declared = getattr(type(block), GATE_DECLARATION, None)
    adapters = [(type(block), declared)] if isinstance(declared, str) else _adapter_table()
    if not any(isinstance(block, cls) and a == attr for cls, a in adapters):
        return None
    try:
        from timm.layers.squeeze_excite import SqueezeExciteCl  # timm's SE on [N, H, W, C]
    except ImportError:
        return block_path, (2, 3)
    return block_path, (1, 2) if isinstance(block, SqueezeExciteCl) else (2, 3)


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

    The first stage rule that matches every path and gives distinct names wins; else SE_1, SE_2, ...
    """
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
    (capture.tracing). Raises NoGatesError, and OptionError for `traced` without `example`.
    """
    model = unwrap(model)
    if pattern is not None:
        return _named(_by_pattern(model, pattern))
    found, tried = _by_type(model)
    if traced and example is None:
        raise OptionError("tracing the gates needs an example input: pass example=a small batch.")
    if found and not traced:
        return _named(found)
    if example is not None:
        sites = trace(model, example)
        if sites:
            names = gate_names([s.owner for s in sites])
            return [Gate(name, i + 1, s.path, s.channels, s.kind, s.call, s.block)
                    for i, (name, s) in enumerate(zip(names, sites))]
        tried += ", nor a sigmoid or hard sigmoid multiplying a feature map channel-wise in a traced forward pass"
    raise _no_gates(model, tried)


def _no_gates(model: nn.Module, tried: str) -> NoGatesError:
    return NoGatesError(f"{type(model).__name__} has no SE gate: looked for {tried}; "
                        "pass a module-name pattern (--gates REGEX) to name the gate modules yourself.")


def _named(found: list[tuple[str, int | None]]) -> list[Gate]:
    names = gate_names([p for p, _ in found])
    return [Gate(name, i + 1, path, ch) for i, (name, (path, ch)) in enumerate(zip(names, found))]


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
    table = _adapter_table()
    found: list[tuple[str, int | None]] = []
    for path, module in model.named_modules():
        declared = getattr(type(module), GATE_DECLARATION, None)
        adapters = [(type(module), declared)] if isinstance(declared, str) else table
        for cls, attr in adapters:
            gate = getattr(module, attr, None)
            if isinstance(module, cls) and isinstance(gate, nn.Module):
                found.append((f"{path}.{attr}" if path else attr, _out_channels(module)))
                break
    tried = (f"SE classes declaring {GATE_DECLARATION!r} and SE modules of types "
             + ", ".join(f"{c.__module__}.{c.__qualname__}" for c, _ in table))
    return found, tried
