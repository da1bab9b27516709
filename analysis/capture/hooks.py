"""ForwardHooks: the one owner of forward hooks on gate modules in the library.

    with ForwardHooks(model, gates, lambda gate, output: None) as hooks:
        model(x)                       # the function runs on every gate's output
    # every hook is removed here, also after an exception

The function gets (gate, module output); returning None keeps the output, anything else
replaces it. `before` adds forward-pre hooks, (module path, gate, function(gate, inputs)), that see
a module's positional inputs before it runs (GateHooks reads a gate's pre-activation and its SE
block's input there; they never change them). Subclasses supply the functions (GateHooks feeds
statistics, GateReplacement swaps gates). Each context registers its hooks on entry and removes exactly those, in reverse order,
on every exit path, so contexts nest and an error never leaves a hook behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from analysis.capture.gates import Gate, unwrap
from analysis.errors import GateValueError

GateFunction = Callable[[Gate, Any], Any]  # (gate, module output) -> None or the replacement output
InputFunction = Callable[[Gate, tuple], None]  # (gate, the module's positional inputs), before it runs


class ForwardHooks:
    """Forward hooks that call `function(gate, output)` for each gate; see the module docstring."""

    def __init__(
        self, model: nn.Module, gates: list[Gate], function: GateFunction,
        before: tuple[tuple[str, Gate, InputFunction], ...] = (),
    ) -> None:
        self.model, self.gates, self.function, self.before = unwrap(model), gates, function, before
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, gate: Gate) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            return self.function(gate, output)

        return hook

    @staticmethod
    def _pre_hook(gate: Gate, function: InputFunction) -> Callable[[nn.Module, tuple], None]:
        def hook(module: nn.Module, inputs: tuple) -> None:
            function(gate, inputs)  # a pre-hook returning a value would replace the inputs: never

        return hook

    def __enter__(self) -> ForwardHooks:
        modules = dict(self.model.named_modules())
        try:
            for gate in self.gates:
                if gate.call is not None:
                    raise GateValueError(f"gate {gate.name} is the call {gate.call} inside {gate.path!r}, "
                                         "not a module whose output a hook can see.")
                if gate.path not in modules:
                    raise GateValueError(f"gate {gate.name}: the model has no module {gate.path!r}.")
                self.handles.append(modules[gate.path].register_forward_hook(self._hook(gate)))
            for path, gate, function in self.before:
                if path not in modules:
                    raise GateValueError(f"gate {gate.name}: the model has no module {path!r}.")
                self.handles.append(modules[path].register_forward_pre_hook(self._pre_hook(gate, function)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove this context's hooks, last registered first."""
        for handle in reversed(self.handles):
            handle.remove()
        self.handles.clear()
