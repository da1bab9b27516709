"""Cost of gates found by tracing (analysis.capture.tracing) against gates found by type.

    python bench/traced_gates.py                                   # timm:seresnet50, CPU, batch 8, 128 px
    python bench/traced_gates.py --device cuda --batch 256 --size 224 --amp bf16

Prints two tables. Discovery: seconds to find the gates by type (the adapter table) and by one
traced forward pass on two images. Collection: images/s of plain inference and of the hooked pass
(GateHooks + GateStats) with the gates found by type, the same gates found by tracing (module gates:
the same hooks), and the same network with each SE module rewritten to call torch.sigmoid in its
forward (functional gates: a TorchFunctionMode runs inside every SE block), each with the ratio to
plain inference of the same network; the modes' passes interleaved.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time

import torch
from torch import nn
from timm.layers.squeeze_excite import SEModule

from analysis import GateHooks, GateStats, StatsConfig, find_gates
from analysis.models.precision import AMP_DTYPES, autocast
from collect_overhead import build, calibrate_batchnorm, device_line, print_table, rate, timed


class FunctionalSE(nn.Module):
    """timm's SEModule with its gate module replaced by a torch.sigmoid call in forward."""

    def __init__(self, se: SEModule) -> None:
        super().__init__()
        self.fc1, self.bn, self.act, self.fc2 = se.fc1, se.bn, se.act, se.fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(self.act(self.bn(self.fc1(x.mean((2, 3), keepdim=True))))))


def functional_copy(model: nn.Module) -> nn.Module:
    """`model`, modified in place: every SEModule replaced by a FunctionalSE of the same weights."""
    for path, module in list(model.named_modules()):
        if isinstance(module, SEModule):
            parent, _, name = path.rpartition(".")
            setattr(model.get_submodule(parent), name, FunctionalSE(module))
    return model


def seconds(call, repeats: int = 3) -> float:
    """The fastest of `repeats` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved(modes: list[tuple[str, nn.Module, list | None]], x: torch.Tensor, batches: int, repeats: int,
                precision) -> list[dict]:
    """Per mode, images/s of the median of `repeats` passes of `batches` batches, the modes' passes
    interleaved (after one warm-up pass each) so that a shared machine's drift hits them alike."""
    classes, n = 10, len(x)
    y, ids = torch.randint(0, classes, (n,)), torch.arange(n)
    times: dict[str, list[float]] = {name: [] for name, _, _ in modes}
    for repeat in range(repeats + 1):
        for name, net, gates in modes:
            config = StatsConfig(classes, calibration=n)  # the first batch calibrates: every timed batch adds
            stats = GateStats(gates, config, device=x.device) if gates else None
            with GateHooks(net, gates, stats) if gates else contextlib.nullcontext():
                def step(i: int) -> None:
                    if stats is not None:
                        stats.begin_batch(y, ids + i * n)
                    with torch.inference_mode(), precision:
                        net(x)
                    if stats is not None:
                        stats.end_batch()

                elapsed = timed(step, batches, 1, x.device, warmup=0)
            if stats is not None:
                stats.finish()
                stats.check()  # every gate saw every image
            if repeat:
                times[name] += elapsed
    rows = []
    for name, _, gates in modes:
        row = {"mode": name, "gates": len(gates or []), **rate(batches * n, times[name])}
        plain = row if not gates else next(r for r in reversed(rows) if not r["gates"])
        rows.append({**row, "ratio to plain": row["images/s"] / plain["images/s"]})
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="timm:seresnet50")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (one is steadier on a shared machine)")
    p.add_argument("--amp", choices=("none", *AMP_DTYPES), default="none")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, channels = build(args.model, 10, device, channels_last=False)
    x = torch.randn(args.batch, channels, args.size, args.size, device=device)
    calibrate_batchnorm(model, x)
    example = x[:2]
    print(device_line(device), f"| {args.model}, batch {args.batch}, {args.size} px, amp {args.amp}")
    with torch.inference_mode():
        forward = seconds(lambda: model(example))
    print_table([{"discovery": "by type (adapter table)", "seconds": seconds(lambda: find_gates(model))},
                 {"discovery": "traced forward pass, 2 images",
                  "seconds": seconds(lambda: find_gates(model, example=example, traced=True))},
                 {"discovery": "(plain forward pass, 2 images)", "seconds": forward}])
    print()
    traced = find_gates(model, example=example, traced=True)
    functional = functional_copy(copy.deepcopy(model))
    calls = find_gates(functional, example=example)
    assert all(g.call == "sigmoid:0" for g in calls), "the functional SE modules were not traced as calls"
    modes = [("plain", model, None), ("collect, gates by type", model, find_gates(model)),
             ("collect, same gates traced", model, traced),
             ("plain, functional SE", functional, None), ("collect, functional SE traced", functional, calls)]
    precision = autocast(device, None if args.amp == "none" else args.amp)
    print_table(interleaved(modes, x, args.batches, args.repeats, precision))


if __name__ == "__main__":
    main()
