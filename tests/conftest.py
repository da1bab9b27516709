"""Shared fixtures: a planted SE model, its data, and a brute-force gate recorder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from analysis.cli import main as cli_main
from analysis.models.architectures import SqueezeExcite

DEVICE = torch.device(os.environ.get("TORCH_DEVICE", "cpu"))

# numpy's and scipy's OpenBLAS on one thread: beside torch's threads, two-thread OpenBLAS made
# scikit-learn's reference fits 30x slower on 2 cores (200 s instead of 7 s for one shipped block).
BLAS_THREADS = threadpool_limits(1, user_api="blas")  # kept for the whole session


class PlantedBlock(nn.Module):
    """An SE block that reads only the pooled input channels in `reads`; passes x through.

    The gate therefore carries class information exactly when `reads` holds class channels.
    """

    def __init__(self, channels: int, reads: slice, seed: int) -> None:
        super().__init__()
        self.se = SqueezeExcite(channels, reduction=4)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            w = torch.randn(self.se.fc1.weight.shape, generator=g)
            mask = torch.zeros(channels)
            mask[reads] = 1.0
            self.se.fc1.weight.copy_(w * mask * 1.5)
            self.se.fc1.bias.zero_()
            self.se.fc2.weight.copy_(torch.randn(self.se.fc2.weight.shape, generator=g))
            self.se.fc2.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.se(x)
        return x


class PlantedNet(nn.Module):
    """Stage layer1 (3 blocks) gates on noise channels, layer2 (3 blocks) on class channels.

    Gate names are SE_2_1..SE_2_3 (class-agnostic) and SE_3_1..SE_3_3 (class-specific).
    """

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        half = channels // 2
        self.layer1 = nn.Sequential(*[PlantedBlock(channels, slice(0, half), i) for i in range(3)])
        self.layer2 = nn.Sequential(*[PlantedBlock(channels, slice(half, channels), 10 + i) for i in range(3)])
        self.fc = nn.Linear(channels, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer2(self.layer1(x)).mean((2, 3)))


def planted_data(n: int, num_classes: int = 10, channels: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose first half of channels is class-free noise and second half a class offset."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n,), generator=g)
    class_offsets = torch.randn(num_classes, channels // 2, generator=torch.Generator().manual_seed(99))
    x = torch.randn(n, channels, 6, 6, generator=g) * 0.5
    x += torch.randn(n, channels, 1, 1, generator=g)  # per-sample offsets so every gate varies
    x[:, channels // 2 :] += class_offsets[y][:, :, None, None] * 1.5
    return x, y


def batches(x: torch.Tensor, y: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    ids = torch.arange(len(y))
    return [(x[i : i + size], y[i : i + size], ids[i : i + size]) for i in range(0, len(y), size)]


def record_gates(model: nn.Module, paths: list[str], x: torch.Tensor, autocast: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Brute force: every gate vector of every sample, [N, C] float64, by plain hooks."""
    modules = dict(model.named_modules())
    seen: dict[str, list[torch.Tensor]] = {p: [] for p in paths}
    handles = [
        modules[p].register_forward_hook(lambda m, i, o, p=p: seen[p].append(o.detach().flatten(2).float().mean(2) if o.dim() > 2 else o.detach()))
        for p in paths
    ]
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
            for i in range(0, len(x), 64):
                model(x[i : i + 64])
    finally:
        for h in handles:
            h.remove()
    return {p: torch.cat(v).double() for p, v in seen.items()}


@pytest.fixture(scope="session")
def planted() -> tuple[PlantedNet, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x, y = planted_data(1200)
    return PlantedNet().eval(), x, y


def cli_error(capsys, argv: list[str]) -> str:
    """The one-line error of a CLI call that must fail with exit status 2."""
    capsys.readouterr()
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("se-analysis: error: ") and "\n" not in err and "Traceback" not in err
    return err


def measure_run(out) -> None:
    """A run with interventions and attributions, made by the CLI on a small random-weight model."""
    common = ["--model", "se_resnet20", "--random-init", "--data", "synthetic:classes=3,n=48,size=16,channels=1",
              "--out", str(out), "--quiet"]
    assert cli_main(["collect", *common]) == 0
    assert cli_main(["ablate", *common, "--groups", "block,all", "--resamples", "50"]) == 0
    assert cli_main(["attribute", *common]) == 0


NEW_COLUMNS = ("eps2_mean", "class_mod", "eta2_perm", "perm_p", "eta2_untrained", "shape_sep_untrained",
               "probe_untrained", "eta2_z", "probe_z", "profile_sep", "shape_sep", "probe_perm", "probe_selectivity",
               "probe_per_class", "probe_ncm")  # issue 14's block columns (api14.md)


def with_new_columns(run_path: Path, out: Path) -> None:
    """A copy of a run as issue 14 writes it: the new block columns (known values: column i of block d
    is d + i / 100), both onsets and a warning in meta.json."""
    from analysis.runs.folder import load_run, write_run

    run = load_run(run_path)
    blocks = run.blocks.copy()
    for i, column in enumerate(NEW_COLUMNS):
        blocks[column] = blocks["depth"] + i / 100
    meta = {k: v for k, v in run.document.items() if k not in ("version", "created", "command", "software", "stats")}
    meta["onset"] = {**meta["onset"], "block": "SE_4_2", "detectable": "SE_2_3", "rule": "shape rule", "rule_detectable": "old rule"}
    meta["warnings"] = ["class 4 has only 3 samples"]
    write_run(run.stats, out, meta, {"blocks": blocks, "channels": run.channels, "class_means": run.class_means})
