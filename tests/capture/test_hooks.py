"""ForwardHooks, the library's one owner of forward hooks: what the function sees and returns, and
that every exit path removes exactly the context's own hooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from analysis.capture.gates import Gate
from analysis.capture.hooks import ForwardHooks
from analysis.errors import GateValueError


class Gated(nn.Module):
    """x * sigmoid(W x): one gate whose output can be worked out by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3, bias=False)
        self.gate = nn.Sigmoid()
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc(x))


GATES = [Gate("SE_1", 1, "gate", 3)]
X = torch.tensor([[0.0, 1.0, -2.0], [3.0, -1.0, 0.5]])


PER_CONTEXT = 1  # on the model: each forward pass starts the count of every module's runs afresh


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_the_function_sees_each_gate_output_and_none_keeps_it():
    model, seen = Gated(), []
    with ForwardHooks(model, GATES, lambda gate, out: seen.append((gate.name, out.clone()))):
        out = model(X)
    assert [name for name, _ in seen] == ["SE_1"]
    torch.testing.assert_close(seen[0][1], torch.sigmoid(X))  # W = I
    torch.testing.assert_close(out, X * torch.sigmoid(X))


def test_a_returned_tensor_replaces_the_output():
    model = Gated()
    with ForwardHooks(model, GATES, lambda gate, out: torch.ones_like(out)):
        assert torch.equal(model(X), X)
    assert not torch.equal(model(X), X)


def test_hooks_are_removed_after_an_exception_in_the_function():
    model = Gated()

    def fail(gate: Gate, out: torch.Tensor) -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with ForwardHooks(model, GATES, fail):
            assert hook_count(model) == 1 + PER_CONTEXT
            model(X)
    assert hook_count(model) == 0


def test_nested_contexts_remove_only_their_own_and_run_in_registration_order():
    model, seen = Gated(), []
    with ForwardHooks(model, GATES, lambda gate, out: seen.append(out.clone())):
        with ForwardHooks(model, GATES, lambda gate, out: torch.zeros_like(out)):
            assert hook_count(model) == 2 * (1 + PER_CONTEXT)
            assert torch.equal(model(X), torch.zeros_like(X))  # the inner replaces after the outer looked
        assert hook_count(model) == 1 + PER_CONTEXT
        torch.testing.assert_close(model(X), X * torch.sigmoid(X))
    assert hook_count(model) == 0
    assert len(seen) == 2 and torch.equal(seen[0], seen[1])


def test_a_missing_module_is_an_error_that_leaves_no_hook():
    model = Gated()
    gates = [*GATES, Gate("SE_2", 2, "missing", 3)]
    with pytest.raises(GateValueError, match="no module 'missing'"):
        with ForwardHooks(model, gates, lambda gate, out: None):
            pass
    assert hook_count(model) == 0
