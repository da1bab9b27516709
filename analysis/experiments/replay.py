"""The part of a forward pass before a given gate, run once and replayed.

An intervention on a gate changes nothing that the network computed before that gate ran. So
`ablate` runs the plain model once per batch while `Prefix.recorded` keeps the outputs of the
modules that could precede a changed gate, and each intervened pass replays them
(`Prefix.replayed`): every module that finished before the gate started, and ran once in the
pass, returns its recorded output (a copy: the code around it may change it in place) instead of
computing it. The rest of the network runs as usual, so any model works, whatever its forward does
between its modules.

    prefix = Prefix(model, gates)
    with prefix.recorded():
        plain = model(x)                    # every candidate's output kept
    with prefix.replayed("SE_4_1"):
        intervened = model(x)               # everything before SE_4_1's gate replayed

Candidates are the modules beside the path from the model down to each gate (the children of the
model and of every ancestor of a gate), so the largest finished parts are replayed whole. Memory:
the candidates' outputs of one batch, about the activations a training step keeps. A gate whose
module runs more than once in a pass (one activation shared by several gates) would have its earlier
runs replayed unseen by the hooks that count them: then nothing is replayed.

`Prefix.started_after` is the other side of the same cut: the modules that began after a gate gave
its output, which the cascading randomisation (analysis.experiments.cascade) re-draws.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map

from analysis.capture.gates import Gate, unwrap
from analysis.errors import InterventionError


@dataclass
class _Call:
    """What a module did in the recorded pass: how often it ran, when it first started and last
    ended (positions in the pass's sequence of module starts and ends), and its output."""

    runs: int = 0
    start: int = -1
    end: int = -1
    output: Any = None


def _largest(modules: list[nn.Module]) -> list[nn.Module]:
    """Those of `modules` inside none of the others."""
    inner = {id(sub) for m in modules for sub in m.modules() if sub is not m}
    return [m for m in modules if id(m) not in inner]


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


@contextlib.contextmanager
def _forwards(modules: Sequence[nn.Module], make: Callable[[nn.Module, Callable[..., Any]], Callable[..., Any]]
              ) -> Iterator[None]:
    """Inside the context each module's forward is `make(module, its forward)` (an attribute of the
    instance, which shadows the class's method); the forwards are restored on every exit path."""
    replaced: list[tuple[nn.Module, Any]] = []
    try:
        for module in modules:
            own = module.__dict__.get("forward")
            module.forward = make(module, module.forward)
            replaced.append((module, own))
    except BaseException:
        _restore(replaced)
        raise
    try:
        yield
    finally:
        _restore(replaced)


def _restore(replaced: list[tuple[nn.Module, Any]]) -> None:
    for module, own in reversed(replaced):
        if own is None:
            del module.forward
        else:
            module.forward = own


class Prefix:
    """What the modules before `gates` did in a recorded pass, and its replay; see the module docstring."""

    def __init__(self, model: nn.Module, gates: list[Gate]) -> None:
        self.root = unwrap(model)
        self.gates = {g.name: self.root.get_submodule(g.path) for g in gates}
        on_the_way = {""} | {path for g in gates for path in itertools.accumulate(g.path.split("."), "{}.{}".format)}
        named = self.root.named_modules(remove_duplicate=False)  # a shared module under each of its paths
        self.modules = list({id(m): m for path, m in named if path and _parent(path) in on_the_way}.values())
        self.calls: dict[int, _Call] = {}

    @contextlib.contextmanager
    def recorded(self) -> Iterator[None]:
        """Each pass of the model inside the context is recorded, replacing the record before."""
        ticks = itertools.count()

        def recording(module: nn.Module, forward: Callable[..., Any]) -> Callable[..., Any]:
            def record(*args: Any, **kwargs: Any) -> Any:
                call = self.calls.setdefault(id(module), _Call())
                start = next(ticks)
                output = forward(*args, **kwargs)
                call.runs += 1
                call.start = start if call.start < 0 else call.start
                call.end, call.output = next(ticks), output
                return output

            return record

        handle = self.root.register_forward_pre_hook(lambda module, args: self.calls.clear())
        try:
            with _forwards(self.modules, recording):
                yield
        finally:
            handle.remove()

    def before(self, gate: str) -> list[nn.Module]:
        """The largest modules that ran once and finished before `gate`'s module started in the
        recorded pass (none where a gate's module ran more than once)."""
        if any(self._call(m).runs != 1 for m in self.gates.values()):
            return []
        start = self._call(self.gates[gate]).start
        return _largest([m for m in self.modules if self._call(m).runs == 1 and self._call(m).end < start])

    def started_after(self, gate: str | None) -> list[nn.Module]:
        """The largest modules that first started after `gate`'s module ended in the recorded pass
        (with None: every module that ran), where every gate's module ran once; raises
        InterventionError where one ran more often (the pass has no single point after it)."""
        repeated = [name for name, m in self.gates.items() if self._call(m).runs != 1]
        if repeated:
            raise InterventionError(f"the module of gate {repeated[0]} ran {self._call(self.gates[repeated[0]]).runs} "
                                    "times in one pass; the network cannot be cut after it.")
        end = -1 if gate is None else self._call(self.gates[gate]).end
        return _largest([m for m in self.modules if self._call(m).runs and self._call(m).start > end])

    def first(self, blocks: Sequence[str]) -> str:
        """Of the gates `blocks`, the one whose module started first in the recorded pass."""
        return min(blocks, key=lambda name: self._call(self.gates[name]).start)

    def _call(self, module: nn.Module) -> _Call:
        return self.calls.get(id(module)) or _Call()

    @contextlib.contextmanager
    def replayed(self, gate: str) -> Iterator[None]:
        """Passes inside the context replay what ran before `gate` in the recorded pass."""

        def replay(module: nn.Module, forward: Callable[..., Any]) -> Callable[..., Any]:
            output = self.calls[id(module)].output
            return lambda *args, **kwargs: tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, output)

        with _forwards(self.before(gate), replay):
            yield
