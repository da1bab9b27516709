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

A module that several gates name (one per run, `Gate.firing`: a shared activation, a block called
twice) has one hook, which gives its k-th run in a forward pass of the model to the gate whose
`firing` is k; a run beyond the gates named is refused, so no gate is ever fed twice in a pass.
While `rerun` holds a gate (a block run again inside a hook, see GateHooks), the runs go to that
gate and are not counted.
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
        self.runs: dict[int, int] = {}  # hook -> the runs of its module so far in this forward pass
        self.rerun: Gate | None = None

    def _next(self, hook: int, path: str, gates: list[Gate]) -> Gate | None:
        """The gate of this run of the module at `path` (hooked as `hook`), or None in a re-run of another gate."""
        if self.rerun is not None:
            return self.rerun if any(g is self.rerun for g in gates) else None
        run = self.runs.get(hook, 0)
        self.runs[hook] = run + 1
        return run_gate(path, run, gates)

    def _hook(self, hook: int, path: str, gates: list[Gate]) -> Callable[[nn.Module, Any, Any], Any]:
        def forward_hook(module: nn.Module, inputs: Any, output: Any) -> Any:
            gate = self._next(hook, path, gates)
            return None if gate is None else self.function(gate, output)

        return forward_hook

    def _pre_hook(self, hook: int, path: str, gates: list[Gate],
                  function: InputFunction) -> Callable[[nn.Module, tuple], None]:
        def pre_hook(module: nn.Module, inputs: tuple) -> None:
            gate = self._next(hook, path, gates)
            if gate is not None:
                function(gate, inputs)  # a pre-hook returning a value would replace the inputs: never

        return pre_hook

    def __enter__(self) -> ForwardHooks:
        try:
            for gate in self.gates:
                if gate.call is not None:
                    raise GateValueError(f"gate {gate.name} is the call {gate.call} inside {gate.path!r}, "
                                         "not a module whose output a hook can see.")
            groups = _by_module(self.model, [(g.path, g, self.function) for g in self.gates])
            for (module, _), (path, gates) in groups.items():
                self.handles.append(module.register_forward_hook(self._hook(len(self.handles), path, gates)))
            for (module, function), (path, gates) in _by_module(self.model, list(self.before)).items():
                hook = self._pre_hook(len(self.handles), path, gates, function)
                self.handles.append(module.register_forward_pre_hook(hook))
            self.handles.append(self.model.register_forward_pre_hook(self._new_pass, prepend=True))
        except BaseException:
            self.remove()
            raise
        return self

    def _new_pass(self, model: nn.Module, inputs: tuple) -> None:
        self.runs = {}  # a new dict, not cleared: torch.compile then guards nothing on the last pass's counts

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Remove this context's hooks, last registered first."""
        for handle in reversed(self.handles):
            handle.remove()
        self.handles.clear()


def run_gate(path: str, run: int, gates: list[Gate]) -> Gate:
    """The gate of run `run` (0-based, in one forward pass) of the module at `path`, whose gates by
    firing are `gates`; GateValueError for a run beyond them."""
    if run < len(gates):
        return gates[run]
    raise GateValueError(
        f"the module {path} ran {run + 1} times in one forward pass, but its gates ({', '.join(g.name for g in gates)}) "
        f"cover {len(gates)} run(s); find the gates with an example batch (find_gates(model, example=x)) "
        "to record each run as a gate.")


def _by_module(model: nn.Module, entries: list[tuple[str, Gate, Any]]) -> dict[tuple[nn.Module, Any], tuple[str, list[Gate]]]:
    """{(module, function): (a path of it, its gates by firing)} for (path, gate, function) entries;
    paths naming one module (a shared activation) share its entry. Raises GateValueError for a path
    the model lacks."""
    groups: dict[tuple[nn.Module, Any], tuple[str, list[Gate]]] = {}
    for path, gate, function in entries:
        try:
            module = model.get_submodule(path)
        except AttributeError:
            raise GateValueError(f"gate {gate.name}: the model has no module {path!r}.") from None
        groups.setdefault((module, function), (path, []))[1].append(gate)
    for _, gates in groups.values():
        gates.sort(key=lambda g: g.firing)
    return groups
