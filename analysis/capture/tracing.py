"""SE gates however they are written: discovery by one traced forward pass, for models whose SE
blocks are of no known type (`gates.find_gates` tries the adapter table first).

Why a TorchFunctionMode beside module hooks (calls.CallCounter), not torch.fx or hooks alone:
torch.fx's symbolic trace stops at data-dependent Python control flow (`if x_ge.shape[-1] != 1` in
timm's GatherExcite, shape checks all over research code), sees shapes and no values (the checks
below compare values) and hands back a new GraphModule instead of the user's modules; hooks on
sigmoid modules miss the functional calls (torch.sigmoid, Tensor.sigmoid, F.hardsigmoid) and cannot
see the multiply, the one thing that makes a sigmoid a gate. The mode sees every torch call made from
Python, with real tensors, in the eager model as it is; the hooks say which module runs each.

A gate is the output g of a gate nonlinearity (a call or a module of the kinds in calls.py) that,
through shape-only operations (views, expand, indexing, dtype casts, interpolate), multiplies a
feature map x [N, C, H, W] channel-wise:

* the multiplier has x's N and C on its first two axes (a spatial attention map [N, 1, H, W] has not);
* g holds one value per channel on one axis ([N, C], [N, C, 1, 1], ECA's [N, 1, C]) and the multiplier
  is g channel by channel at every position; or g is a spatial gate [N, C, h, w] (gather-excite);
* its pre-activation is no feature map: walking back through the operations that made it, stopping
  at x and at tensors of x's resolution that no shape-only operation made, passes an operation that
  is not shape-only (the excitation). SiLU written as x * sigmoid(x) passes none; a sigmoid
  classifier head multiplies no feature map. Neither is a gate. (Where x has a single position, only
  x stops the walk: there x * sigmoid(f(x)) for a pointwise f, a batch norm say, counts as a gate.)

The excitation gives the kind: a conv1d across channels "eca"; a spatial gate or a convolution over
positions (a learnt gather) "ge"; a max-pooled descriptor "cbam-channel"; otherwise "se". The
gate's block is the innermost module running the nonlinearity whose input is x itself: re-run in
float32 under AMP and pooled for the squeeze input z, like the SE blocks known by type. The re-run
starts from the channel means of x (`pooled`) when the excitation reads x only through them (every
way back from the pre-activation to x passes a mean over all positions: SE and ECA do; CBAM's
maxima, a sum, a spread or gather-excite's positions do not) and the block, run on them as a 1x1
map, gives the traced gate again (to float32 rounding; a block that also convolves x, say, does not).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from analysis.capture.adapters import module_nonlinearity
from analysis.capture.calls import CallCounter, Frame, evaluating, subtrees

SHAPE_OPS = frozenset({"view", "view_as", "reshape", "reshape_as", "expand", "expand_as", "unsqueeze", "squeeze",
                       "flatten", "contiguous", "__getitem__", "transpose", "permute", "float", "to", "type_as",
                       "half", "bfloat16", "clone", "interpolate", "repeat"})
MULTIPLY = frozenset({"mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply"})
MAX_POOLS = frozenset({"amax", "max", "max_pool2d", "adaptive_max_pool2d"})
MEANS = frozenset({"mean", "adaptive_avg_pool2d", "avg_pool2d"})
KINDS = ("se", "eca", "cbam-channel", "ge")  # what `_kind` tells from a gate's excitation


@dataclass(frozen=True)
class Site:
    """A gate found by tracing: `path` the gate module, or with `call` the module making the call
    (calls.py), in its run `firing` of the forward pass; `owner` the module making the multiply (its
    path names the gate); `block` and `pooled` as above."""

    path: str
    call: str | None
    owner: str
    block: str | None
    kind: str
    channels: int
    firing: int = 0
    pooled: bool = False


def channel_view(t: torch.Tensor, channels: int) -> torch.Tensor | None:
    """`t` [N, ...] as [N, C] when one axis holds the C channels and every other axis is 1 ([N, C],
    [N, C, 1, 1], ECA's [N, 1, C]); None otherwise."""
    rest = t.shape[1:]
    if rest.numel() == channels and channels in rest:
        return t.reshape(t.shape[0], channels)
    return None


@dataclass
class _Node:
    op: str
    inputs: tuple[torch.Tensor, ...]
    prior: _Node | None = None  # for an in-place operation, what had made the tensor it overwrote


@dataclass
class _Candidate:
    path: str
    call: str | None
    run: int
    output: torch.Tensor
    input: torch.Tensor
    pre: _Node | None  # the operation that made the pre-activation
    stack: tuple[Frame, ...]


def _tensors(args: tuple, kwargs: dict) -> tuple[torch.Tensor, ...]:
    flat = [b for a in (*args, *kwargs.values()) for b in (a if isinstance(a, (tuple, list)) else (a,))]
    return tuple(t for t in flat if isinstance(t, torch.Tensor))


class _Trace:
    """What one forward pass did: the operation that made each tensor, the gate candidates, the gates."""

    def __init__(self, model: nn.Module) -> None:
        self.counter = CallCounter(dict(model.named_modules()), after=self.after, returned=self.returned)
        self.nodes: dict[int, _Node] = {}  # id(tensor) -> the operation that made it
        self.kept: list[torch.Tensor] = []  # every tensor seen stays alive, so that no id is reused
        self.candidates: dict[int, _Candidate] = {}  # id(output of a gate nonlinearity), in forward order
        self.made_pre: dict[int, _Node | None] = {}  # id(output of a nonlinearity call) -> what made its input
        self.sites: dict[int, Site] = {}
        self.gated: dict[int, torch.Tensor] = {}  # id(output of a gate nonlinearity) -> the feature map it gates

    def after(self, func: Any, args: tuple, kwargs: dict, out: Any, site: tuple[Frame, str] | None) -> None:
        name, inputs = getattr(func, "__name__", str(func)), _tensors(args, kwargs)
        if site is not None and isinstance(out, torch.Tensor):  # read before an in-place call overwrites it
            self.made_pre[id(out)] = self.nodes.get(id(inputs[0]))
            if module_nonlinearity(site[0].module) is None:
                self._candidate(site[0], site[1], out, inputs[0])
        outputs = _tensors(tuple(out) if isinstance(out, (tuple, list)) else (out,), {})
        for t in outputs:
            prior = self.nodes.get(id(t)) if any(t is i for i in inputs) else None
            self.nodes[id(t)] = _Node(name, inputs, prior)
        self.kept += [*inputs, *outputs]
        if name in MULTIPLY and len(inputs) == 2:
            self._multiply(*inputs)

    def returned(self, frame: Frame, output: Any) -> None:
        if (module_nonlinearity(frame.module) is not None and isinstance(output, torch.Tensor)
                and isinstance(frame.input, torch.Tensor)):
            self._candidate(frame, None, output, frame.input)
            self.kept.append(output)

    def _candidate(self, frame: Frame, call: str | None, output: torch.Tensor, pre: torch.Tensor) -> None:
        made = self.made_pre.get(id(output), self.nodes.get(id(pre)))
        self.candidates[id(output)] = _Candidate(frame.path, call, frame.run, output, pre, made, tuple(self.counter.stack))

    def _source(self, t: torch.Tensor) -> _Candidate | None:
        """The gate candidate that `t` is, through shape-only operations, or None."""
        while id(t) not in self.candidates:
            node = self.nodes.get(id(t))
            if node is None or node.op not in SHAPE_OPS or not node.inputs:
                return None
            t = node.inputs[0]
        return self.candidates[id(t)]

    def _multiply(self, a: torch.Tensor, b: torch.Tensor) -> None:
        for x, multiplier in ((a, b), (b, a)):
            candidate = self._source(multiplier)
            if candidate is None or x.dim() != 4 or id(candidate.output) in self.sites:
                continue
            kind = self._kind(candidate, multiplier, x)
            if kind is not None:
                block = next((f.path for f in reversed(candidate.stack) if f.input is x), None)
                owner = self.counter.stack[-1].path
                self.sites[id(candidate.output)] = Site(candidate.path, candidate.call, owner, block, kind, x.shape[1],
                                                        candidate.run, self._reads_means(candidate, x))
                self.gated[id(candidate.output)] = x

    def _kind(self, candidate: _Candidate, multiplier: torch.Tensor, x: torch.Tensor) -> str | None:
        """The gate's kind when `candidate` multiplies x channel-wise (module docstring), else None."""
        n, c = x.shape[:2]
        g = candidate.output
        if (c < 2 or multiplier.dim() != 4 or tuple(multiplier.shape[:2]) != (n, c)
                or torch.broadcast_shapes(multiplier.shape, x.shape) != x.shape):
            return None
        spatial = g.dim() == 4 and tuple(g.shape[:2]) == (n, c) and g.shape[2:].numel() > 1
        if not spatial:
            flat = channel_view(g, c)
            if flat is None or not torch.allclose(multiplier.float().expand(x.shape), flat.float()[:, :, None, None]
                                                  .expand(x.shape), rtol=1e-2, atol=1e-3):
                return None
        excitation = self._excitation(candidate, x)
        ops = {node.op for node in excitation}
        if not ops - SHAPE_OPS:
            return None
        if "conv1d" in ops:
            return "eca"
        if spatial or any(node.op == "conv2d" and node.inputs[0].shape[2:].numel() > 1 for node in excitation):
            return "ge"
        return "cbam-channel" if ops & MAX_POOLS else "se"

    def _excitation(self, candidate: _Candidate, x: torch.Tensor) -> list[_Node]:
        """The operations between the feature maps (x, and where x has more than one position, the
        tensors with as many that no shape-only operation made) and the candidate's pre-activation."""
        positions = x.shape[2:].numel()
        todo, seen, passed = [(candidate.input, candidate.pre)], set(), []
        while todo:
            t, node = todo.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            if t is x or (positions > 1 and t.dim() == 4 and t.shape[2:].numel() >= positions
                          and node.op not in SHAPE_OPS):
                continue
            passed.append(node)
            todo += [(i, node.prior if i is t else self.nodes.get(id(i))) for i in node.inputs]
        return passed


    def _reads_means(self, candidate: _Candidate, x: torch.Tensor) -> bool:
        """Whether every way back from the candidate's pre-activation to x passes a channel mean of x
        (a mean over positions leaving one value per sample and channel), and none reaches another
        feature map (see `_excitation`)."""
        n, c, positions = x.shape[0], x.shape[1], x.shape[2:].numel()
        todo, seen = [(candidate.input, candidate.pre)], set()
        while todo:
            t, node = todo.pop()
            if t is x or (positions > 1 and t.dim() == 4 and t.shape[2:].numel() >= positions
                          and node is not None and node.op not in SHAPE_OPS):
                return False
            if node is None or id(node) in seen or (node.op in MEANS and t.numel() == n * c):
                continue
            seen.add(id(node))
            todo += [(i, node.prior if i is t else self.nodes.get(id(i))) for i in node.inputs]
        return True


def trace(model: nn.Module, example: torch.Tensor) -> list[Site]:
    """The gates of one forward pass of `model` on `example` (in eval mode, without gradients, the
    modes restored after), in forward order. Every tensor of the pass is kept until it returns:
    give a small batch."""
    traced = _Trace(model)
    with evaluating(model), torch.no_grad():
        with traced.counter:
            model(example)
        sites = [(traced.sites[i], traced.candidates[i].output, traced.gated[i])
                 for i in traced.candidates if i in traced.sites]
        return [replace(site, pooled=site.pooled and site.block is not None and _runs_on_means(model, site, x, gate))
                for site, gate, x in sites]


def _runs_on_means(model: nn.Module, site: Site, x: torch.Tensor, gate: torch.Tensor) -> bool:
    """Whether the site's block, run on the channel means of its input x as a 1x1 map, gives the
    traced gate again (to float32 rounding; the module docstring says why)."""
    modules = dict(model.named_modules())
    seen: list[torch.Tensor] = []

    def call(func: Any, args: tuple, kwargs: dict, out: Any, at: tuple[Frame, str] | None) -> None:
        if at is not None and (at[0].path, at[1]) == (site.path, site.call):
            seen.append(out)

    def returned(frame: Frame, output: Any) -> None:
        if site.call is None and frame.path == site.path:
            seen.append(output)

    try:
        with CallCounter(subtrees(modules, {site.path}), after=call, returned=returned):
            modules[site.block](x.float().mean((2, 3), keepdim=True))
    except Exception:  # a block that cannot run on a 1x1 map (a 3x3 conv without padding, say) reads more
        return False
    again = seen[0] if seen else None
    return (isinstance(again, torch.Tensor) and again.shape == gate.shape
            and torch.allclose(again.float(), gate.float(), rtol=1e-4, atol=1e-5))
