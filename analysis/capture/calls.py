"""The gate nonlinearities (sigmoid, hard sigmoid) as module types and as function calls, their
float32 versions, and how one call of them is named, the same way in discovery and collection.

A module gate is hooked like any module. A functional gate (`torch.sigmoid(...)`, `Tensor.sigmoid`,
`F.hardsigmoid` inside some module's forward) has no module of its own, so it is named by its site:
the innermost tracked module running the call and the call's ordinal among that module's calls of
the same nonlinearity in one forward, e.g. `("layer2.1", "sigmoid:0")`. `CallCounter` keeps that
count: forward hooks on the tracked modules keep a stack of the running ones, and a
`torch.overrides.TorchFunctionMode`, active only while a tracked module runs, sees every torch
function called from Python, functional calls included (module hooks cannot see those).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

Function = Callable[[torch.Tensor], torch.Tensor]

# torch function name (as a TorchFunctionMode sees it) -> the nonlinearity it computes
_CALLS = {"sigmoid": "sigmoid", "sigmoid_": "sigmoid", "special_expit": "sigmoid", "hardsigmoid": "hardsigmoid"}
# nonlinearity -> (its float32 function, its name in gate_precision)
_FP32_CALLS: dict[str, tuple[Function, str]] = {"sigmoid": (torch.sigmoid, "sigmoid"),
                                                "hardsigmoid": (F.hardsigmoid, "hard sigmoid")}


def _fp32_table() -> list[tuple[type, Function, str]]:
    """(gate activation class, the same nonlinearity as a function, its name) for every gate type we
    know: the one place that says how a module gate is recomputed in float32 from its pre-activation."""
    table: list[tuple[type, Function, str]] = [
        (nn.Sigmoid, torch.sigmoid, "sigmoid"), (nn.Hardsigmoid, F.hardsigmoid, "hard sigmoid")]
    try:
        from timm.layers import activations as tact
        from timm.layers import activations_me as tme

        table += [(tact.Sigmoid, torch.sigmoid, "sigmoid"), (tact.HardSigmoid, F.hardsigmoid, "hard sigmoid"),
                  (tme.HardSigmoidMe, F.hardsigmoid, "hard sigmoid")]
    except ImportError:
        pass
    return table


def fp32_gate(module: nn.Module) -> tuple[Function, str] | None:
    """(the gate module's nonlinearity as a function, its name), or None for a module of unknown type."""
    for cls, function, name in _fp32_table():
        if type(module) is cls:
            return function, name
    return None


def fp32_call(call: str) -> tuple[Function, str]:
    """(the float32 function, its name) of a functional gate's site name, e.g. "hardsigmoid:0"."""
    return _FP32_CALLS[call.rpartition(":")[0]]


@dataclass
class Frame:
    """One running call of a tracked module: its path, the module, its first positional input."""

    path: str
    module: nn.Module
    input: Any
    counts: dict[str, int] = field(default_factory=dict)


class _Mode(TorchFunctionMode):
    def __init__(self, counter: CallCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        return self.counter.call(func, args, kwargs or {})


Before = Callable[[Frame, str, tuple], None]  # (frame, site name, the call's positional args)
After = Callable[[Callable, tuple, dict, Any, "tuple[Frame, str] | None"], None]  # (func, args, kwargs, out, site)


class CallCounter:
    """Names every gate-nonlinearity call made while one of `modules` runs (see the module
    docstring): `before(frame, site, args)` runs just before such a call, `after(func, args, kwargs,
    out, site)` after every torch call (site None unless it is one), `returned(frame, output)` after
    each tracked module (`before` and `after` run outside the mode). Hooks are removed on exit, also
    after an error; the pre-hooks run before any other, so that other hooks' calls count in their module.
    """

    def __init__(self, modules: dict[str, nn.Module], before: Before | None = None, after: After | None = None,
                 returned: Callable[[Frame, Any], None] | None = None) -> None:
        self.modules, self.before, self.after, self.returned = modules, before, after, returned
        self.stack: list[Frame] = []
        self.mode = _Mode(self)
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> CallCounter:
        try:
            for path, module in self.modules.items():
                self.handles.append(module.register_forward_pre_hook(self._push(path), prepend=True))
                self.handles.append(module.register_forward_hook(self._pop, always_call=True))
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in reversed(self.handles):
            handle.remove()
        self.handles.clear()
        if self.stack:  # a forward stopped by an error inside a tracked module
            self.stack.clear()
            self.mode.__exit__(None, None, None)

    def _push(self, path: str) -> Callable[[nn.Module, tuple], None]:
        def hook(module: nn.Module, args: tuple) -> None:
            if not self.stack:
                self.mode.__enter__()
            self.stack.append(Frame(path, module, args[0] if args else None))

        return hook

    def _pop(self, module: nn.Module, args: tuple, output: Any) -> None:
        frame = self.stack.pop()
        if not self.stack:
            self.mode.__exit__(None, None, None)
        if self.returned is not None:
            self.returned(frame, output)

    def call(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        """Run one torch call seen by the mode, naming it when it is a gate nonlinearity."""
        nonlinearity = _CALLS.get(getattr(func, "__name__", ""))
        site = None
        if nonlinearity is not None and self.stack:
            frame = self.stack[-1]
            ordinal = frame.counts.get(nonlinearity, 0)
            frame.counts[nonlinearity] = ordinal + 1
            site = frame, f"{nonlinearity}:{ordinal}"
            if self.before is not None:
                self.before(frame, site[1], args)
        out = func(*args, **kwargs)
        if self.after is not None:
            self.after(func, args, kwargs, out, site)
        return out


def subtrees(modules: dict[str, nn.Module], roots: set[str]) -> dict[str, nn.Module]:
    """The modules at `roots` and every module inside them."""
    return {p: m for p, m in modules.items() if any(r == "" or p == r or p.startswith(r + ".") for r in roots)}
