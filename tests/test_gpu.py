"""The same statistics on a CUDA device as on the CPU; skipped without CUDA."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import batches

from analysis import collect

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("compile", [False, True])
def test_cuda_collection_equals_cpu(planted, compile):
    model, x, y = planted
    cpu = collect(model, batches(x, y, 200), 10, progress=False)
    gpu = collect(copy.deepcopy(model).cuda(), batches(x, y, 200), 10, compile=compile, progress=False)
    assert gpu.device.type == "cuda"
    for gate in cpu.gates:
        for a, b in zip(cpu.moments(gate.name), gpu.moments(gate.name)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
        assert torch.equal(cpu.reservoir(gate.name)[2], gpu.reservoir(gate.name)[2])
        # histogram bins may differ only for values within float rounding of a bin edge
        assert (cpu.histogram(gate.name) - gpu.histogram(gate.name)).abs().sum() <= 2


def test_cuda_bf16_channels_last(planted):
    model, x, y = planted
    stats = collect(copy.deepcopy(model).cuda(), batches(x, y, 200), 10, amp="bf16", channels_last=True, progress=False)
    count, total, _ = stats.moments("SE_3_1")
    assert int(count.sum()) == len(y) and torch.isfinite(total).all()
