"""The same statistics on a CUDA device as on the CPU; skipped without CUDA."""

from __future__ import annotations

import copy

import pytest
import torch

from analysis import collect
from analysis.testing.nets import batches

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
        (cpu_counts, cpu_edges), (gpu_counts, gpu_edges) = cpu.histogram(gate.name), gpu.histogram(gate.name)
        torch.testing.assert_close(gpu_edges, cpu_edges, rtol=1e-5, atol=1e-7)  # the first batch's quantiles
        # counts may differ only for values within float rounding of a bin edge
        assert (cpu_counts - gpu_counts).abs().sum() <= 2


def test_cuda_bf16_channels_last(planted):
    model, x, y = planted
    stats = collect(copy.deepcopy(model).cuda(), batches(x, y, 200), 10, amp="bf16", channels_last=True, progress=False)
    count, total, _ = stats.moments("SE_3_1")
    assert int(count.sum()) == len(y) and torch.isfinite(total).all()


def test_ablate_and_attribute_on_cuda_equal_cpu(tmp_path):
    from analysis.cli import main
    from analysis.models.architectures import build_model
    from analysis.runs.folder import load_run

    weights = tmp_path / "w.pth"
    torch.save(build_model("se_resnet20", in_channels=1, num_classes=3).state_dict(), weights)
    common = ["--model", "se_resnet20", "--weights", str(weights), "--data", "synthetic:classes=3,n=96,size=16,channels=1",
              "--out", str(tmp_path / "run"), "--quiet"]
    assert main(["collect", *common]) == 0
    tables = {}
    for device in ("cpu", "cuda"):
        assert main(["ablate", *common, "--device", device, "--resamples", "50"]) == 0
        assert main(["attribute", *common, "--device", device]) == 0
        run = load_run(tmp_path / "run")
        tables[device] = run.table("interventions"), run.table("attributions")
    (cpu_iv, cpu_attr), (gpu_iv, gpu_attr) = tables["cpu"], tables["cuda"]
    assert (cpu_iv["acc"] - gpu_iv["acc"]).abs().max() <= 2 / 96  # an image or two near a tie may flip
    torch.testing.assert_close(torch.tensor(gpu_iv["loss"].values), torch.tensor(cpu_iv["loss"].values), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(torch.tensor(gpu_attr["mean_attr"].values), torch.tensor(cpu_attr["mean_attr"].values),
                               rtol=1e-3, atol=1e-5)
