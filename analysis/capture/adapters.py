"""The registry of what the toolkit knows about gates: SE classes and gate nonlinearities.

    register_gate(MySE, "gate", pooled=True)    # MySE's gate is its submodule `gate`
    gate_adapters()                              # every SE class known, e.g. for a help text

An adapter says where an SE class keeps its gate activation module (timm keeps it in `gate`,
torchvision in `scale_activation`; blocks without SE often hold an `nn.Identity` under the same
name, so SE blocks are found by type, never by attribute name) and how its gate is recomputed in
float32 under AMP: with `pooled`, its excitation reads its input only through the channel means,
so the float32 re-run starts from them (the block run on them as a 1x1 map); otherwise the block
runs again on its upcast input. A class of your own can instead declare `se_gate = "gate"` and
`se_pooled = True` as class attributes (the project's blocks in analysis.models do), so that
models never import this stage.

A nonlinearity is a gate activation (sigmoid, hard sigmoid) as module classes and as the names of
the torch functions computing it: `capture.calls` names the functional calls, and a gate's float32
value is the nonlinearity's function on its upcast pre-activation.

The built-in entries (torchvision's and timm's, when installed) are registered once, on first use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Function = Callable[[torch.Tensor], torch.Tensor]
GATE_DECLARATION = "se_gate"  # class attribute naming an SE class's gate submodule
POOLED_DECLARATION = "se_pooled"  # class attribute: its excitation reads the input only through channel means


@dataclass(frozen=True)
class GateAdapter:
    """An SE class: `gate` its attribute holding the gate activation module; `pooled` (or, given a
    block, says) whether its excitation reads the block input only through the channel means;
    `channels_last` for blocks whose input is [N, H, W, C]."""

    se_class: type
    gate: str
    pooled: bool | Callable[[nn.Module], bool] = False
    channels_last: bool = False

    def reads_means(self, block: nn.Module) -> bool:
        """Whether this block's float32 re-run may start from its input's channel means."""
        return self.pooled(block) if callable(self.pooled) else self.pooled

    def squeeze_dims(self) -> tuple[int, int]:
        """The spatial dims of the block's input, averaged by the squeeze."""
        return (1, 2) if self.channels_last else (2, 3)

    def __str__(self) -> str:
        return f"{self.se_class.__module__}.{self.se_class.__qualname__}.{self.gate}"


@dataclass(frozen=True)
class Nonlinearity:
    """A gate activation: `name` its words in gate_precision, `function` it in float32, `modules`
    the module classes computing it, `calls` the torch function names computing it."""

    key: str
    name: str
    function: Function
    modules: tuple[type, ...] = ()
    calls: tuple[str, ...] = ()


class _Registry:
    def __init__(self) -> None:
        self.adapters: list[GateAdapter] = []
        self.nonlinearities: dict[str, Nonlinearity] = {}
        self.calls: dict[str, Nonlinearity] = {}  # torch function name -> its nonlinearity
        self.built = False

    def ready(self) -> _Registry:
        if not self.built:
            self.built = True
            _register_builtins()
        return self


_REGISTRY = _Registry()


def register_gate(se_class: type, gate: str, *, pooled: bool | Callable[[nn.Module], bool] = False,
                  channels_last: bool = False) -> type:
    """Make `find_gates` find `se_class`'s gate, its submodule `gate` (see the module docstring for
    `pooled`: leave it False unless the excitation reads the input only through its channel means).
    A later registration of a class wins over an earlier one. Returns the class, so that it decorates too."""
    registry = _REGISTRY.ready()
    registry.adapters = [a for a in registry.adapters if a.se_class is not se_class]
    registry.adapters.append(GateAdapter(se_class, gate, pooled, channels_last))
    return se_class


def register_nonlinearity(key: str, name: str, function: Function, *, modules: tuple[type, ...] = (),
                          calls: tuple[str, ...] = ()) -> None:
    """Add module classes and torch function names computing the gate nonlinearity `key` (its float32
    `function`, its words `name`); a key registered before keeps its classes and names too."""
    registry = _REGISTRY.ready()
    old = registry.nonlinearities.get(key)
    if old is not None:
        modules, calls = old.modules + modules, old.calls + calls
    registry.nonlinearities[key] = entry = Nonlinearity(key, name, function, modules, calls)
    registry.calls |= dict.fromkeys(entry.calls, entry)


def gate_adapters() -> list[GateAdapter]:
    """Every SE class known by type (library classes; classes declaring `se_gate` are found too)."""
    return list(_REGISTRY.ready().adapters)


def adapter_of(module: nn.Module) -> GateAdapter | None:
    """The adapter of this module's class (a declaration on the class first, then the registry,
    latest registration first), or None for a module that is no SE block we know."""
    cls = type(module)
    declared = getattr(cls, GATE_DECLARATION, None)
    if isinstance(declared, str):
        return GateAdapter(cls, declared, bool(getattr(cls, POOLED_DECLARATION, False)))
    return next((a for a in reversed(_REGISTRY.ready().adapters) if isinstance(module, a.se_class)), None)


def module_nonlinearity(module: nn.Module) -> Nonlinearity | None:
    """The nonlinearity a module of exactly this class computes, or None."""
    return next((n for n in _REGISTRY.ready().nonlinearities.values() if type(module) in n.modules), None)


def call_nonlinearities() -> dict[str, Nonlinearity]:
    """{torch function name: the nonlinearity it computes}, for `capture.calls` to look calls up in."""
    return _REGISTRY.ready().calls


def nonlinearity(key: str) -> Nonlinearity:
    """The nonlinearity registered under `key` ("sigmoid", "hardsigmoid")."""
    return _REGISTRY.ready().nonlinearities[key]


def _register_builtins() -> None:
    """torch's gate nonlinearities, and torchvision's and timm's SE classes and activations when installed."""
    sigmoid, hard = [nn.Sigmoid], [nn.Hardsigmoid]
    try:
        from torchvision.ops import SqueezeExcitation

        register_gate(SqueezeExcitation, "scale_activation", pooled=True)
    except ImportError:
        pass
    try:
        from timm.layers import activations as tact
        from timm.layers import activations_me as tme
        from timm.layers import squeeze_excite as tse
        from timm.models import _efficientnet_blocks as teb
        from timm.models import senet as tsenet

        def without_maxpool(block: nn.Module) -> bool:
            return not getattr(block, "add_maxpool", False)  # with it, the squeeze mixes in the channel maxima

        register_gate(tse.SEModule, "gate", pooled=without_maxpool)
        register_gate(tse.EffectiveSEModule, "gate", pooled=without_maxpool)
        register_gate(tse.SqueezeExciteCl, "gate", pooled=True, channels_last=True)
        register_gate(teb.SqueezeExcite, "gate", pooled=True)
        register_gate(tsenet.SEModule, "sigmoid", pooled=True)
        sigmoid.append(tact.Sigmoid)
        hard += [tact.HardSigmoid, tme.HardSigmoidMe]
    except ImportError:
        pass
    register_nonlinearity("sigmoid", "sigmoid", torch.sigmoid, modules=tuple(sigmoid),
                          calls=("sigmoid", "sigmoid_", "special_expit"))
    register_nonlinearity("hardsigmoid", "hard sigmoid", F.hardsigmoid, modules=tuple(hard), calls=("hardsigmoid",))
