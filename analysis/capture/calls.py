"""How one call of a gate nonlinearity (capture.adapters) is named, the same way in discovery and
collection, and which run of a module in one forward pass a call belongs to.

A module gate is hooked like any module. A functional gate (`torch.sigmoid(...)`, `Tensor.sigmoid`,
`F.hardsigmoid` inside some module's forward) has no module of its own, so it is named by its site:
the innermost tracked module running the call and the call's ordinal among that module's calls of
the same nonlinearity in one run, e.g. `("layer2.1", "sigmoid:0")`; a module that runs k times in
one forward pass (a block whose weights are shared) has k runs of each site, told apart by
`Frame.run`. `CallCounter` keeps those counts: forward hooks on the tracked modules keep a stack of
the running ones, and a `torch.overrides.TorchFunctionMode`, active only while a tracked module runs,
sees every torch function called from Python, functional calls included (module hooks cannot see those).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from analysis.capture.adapters import Nonlinearity, call_nonlinearities, nonlinearity


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode (BatchNorm uses, and never updates, its running statistics); every
    module's mode restored after, also after an error."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


@dataclass
class Frame:
    """One running call of a tracked module: its path, the module, its first positional input, and
    which of the module's runs in this forward pass it is (-1 in a re-run, see CallCounter.paused)."""

    path: str
    module: nn.Module
    input: Any
    run: int = 0
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
    each tracked module (`before` and `after` run outside the mode). Runs are counted from the start
    of each forward pass of `root` (default: from entering the context); while `paused` (a module
    run again inside a hook) none is counted. Hooks are removed on exit, also after an error; the
    pre-hooks run before any other, so that other hooks' calls count in their module.
    """

    def __init__(self, modules: dict[str, nn.Module], before: Before | None = None, after: After | None = None,
                 returned: Callable[[Frame, Any], None] | None = None, root: nn.Module | None = None) -> None:
        self.modules, self.before, self.after, self.returned, self.root = modules, before, after, returned, root
        self.stack: list[Frame] = []
        self.runs: dict[str, int] = {}  # path -> its runs so far in this forward pass
        self.paused = False
        self.nonlinearities = call_nonlinearities()
        self.mode = _Mode(self)
        self.handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> CallCounter:
        try:
            for path, module in self.modules.items():
                self.handles.append(module.register_forward_pre_hook(self._push(path), prepend=True))
                self.handles.append(module.register_forward_hook(self._pop, always_call=True))
            if self.root is not None:  # after the pushes, prepended: the root's own push counts afresh
                self.handles.append(self.root.register_forward_pre_hook(self._new_pass, prepend=True))
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

    def _new_pass(self, model: nn.Module, inputs: tuple) -> None:
        self.runs = {}  # a new dict, not cleared: torch.compile then guards nothing on the last pass's counts

    def _push(self, path: str) -> Callable[[nn.Module, tuple], None]:
        def hook(module: nn.Module, args: tuple) -> None:
            if not self.stack:
                self.mode.__enter__()
            run = -1
            if not self.paused:
                run = self.runs.get(path, 0)
                self.runs[path] = run + 1
            self.stack.append(Frame(path, module, args[0] if args else None, run))

        return hook

    def _pop(self, module: nn.Module, args: tuple, output: Any) -> None:
        frame = self.stack.pop()
        if not self.stack:
            self.mode.__exit__(None, None, None)
        if self.returned is not None:
            self.returned(frame, output)

    def call(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        """Run one torch call seen by the mode, naming it when it is a gate nonlinearity."""
        nonlinearity = self.nonlinearities.get(getattr(func, "__name__", ""))
        site = None
        if nonlinearity is not None and self.stack:
            frame = self.stack[-1]
            ordinal = frame.counts.get(nonlinearity.key, 0)
            frame.counts[nonlinearity.key] = ordinal + 1
            site = frame, f"{nonlinearity.key}:{ordinal}"
            if self.before is not None:
                self.before(frame, site[1], args)
        out = func(*args, **kwargs)
        if self.after is not None:
            self.after(func, args, kwargs, out, site)
        return out


def site_nonlinearity(call: str) -> Nonlinearity:
    """The nonlinearity of a functional gate's site name, e.g. "hardsigmoid:0"."""
    return nonlinearity(call.rpartition(":")[0])


def subtrees(modules: dict[str, nn.Module], roots: set[str]) -> dict[str, nn.Module]:
    """The modules at `roots` and every module inside them."""
    return {p: m for p, m in modules.items() if any(r == "" or p == r or p.startswith(r + ".") for r in roots)}
