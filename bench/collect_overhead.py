"""Cost of gate collection over plain inference, on tensors already on the device.

    python bench/collect_overhead.py                                   # small SE-ResNet, CPU
    python bench/collect_overhead.py --model timm:seresnet50 --size 224 --batch 256 \
        --device cuda --amp bf16 --channels-last --compile

Prints one row per mode: images/s (median of --repeats timed passes over --batches batches, after
warm-up), the spread of the passes, the ratio to plain inference, and peak GPU memory. Modes:
plain; collect (GateHooks + GateStats, everything the statistics keep); naive (hooks that copy each
gate to a host list); captum (LayerActivation on every gate, when captum is installed).
bench/gpu_throughput.py and bench/jpeg_pipeline.py reuse the helpers here.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from analysis import GateHooks, GateStats, StatsConfig, find_gates
from analysis.models.precision import AMP_DTYPES, autocast
from analysis.models.spec import build_from_spec, input_shape


MODES = ("plain", "collect", "naive", "captum")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[int], Any], batches: int, repeats: int, device: torch.device, warmup: int = 2) -> list[float]:
    """Seconds of each of `repeats` passes of `batches` calls of step(i), after `warmup` passes."""
    for _ in range(warmup):
        for i in range(batches):
            step(i)
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(batches):
            step(i)
        sync(device)
        times.append(time.perf_counter() - start)
    return times


def rate(images: int, times: list[float]) -> dict[str, float]:
    """Images/s of the median pass, and the passes' spread (max - min) in percent of the median."""
    median = statistics.median(times)
    return {"images/s": images / median, "spread %": 100 * (max(times) - min(times)) / median}


def peak_mib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else math.nan


def build(spec: str, classes: int, device: torch.device, channels_last: bool) -> tuple[nn.Module, int]:
    """(model with random weights on `device`, its input channels); project models read 1 channel."""
    in_channels = 1 if spec.startswith("se_") else None
    model, _ = build_from_spec(spec, random_init=True, num_classes=classes, in_channels=in_channels)
    channels, _ = input_shape(model)
    model = model.to(device)
    return (model.to(memory_format=torch.channels_last) if channels_last else model), channels


def calibrate_batchnorm(model: nn.Module, x: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics from one batch, as training would have.

    With random weights and the initial running statistics (0 and 1), activations grow block after
    block; on natural images SE-ResNet-50's last stage overflows to NaN gates in bf16."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: one batch sets the statistics outright
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


def measure_modes(
    model: nn.Module, x: torch.Tensor, classes: int, *, amp: str = "none", compile: bool = False,
    batches: int = 10, repeats: int = 5, modes: tuple[str, ...] = MODES,
) -> list[dict[str, Any]]:
    """One row for plain inference and one per other mode in `modes`, for batches of `x` through `model`.

    With `compile`, each mode compiles afresh with its hooks in place, as collect() does: dynamo
    does not guard on module hooks, so a graph compiled without them would silently skip them.
    """
    device = x.device
    y = torch.randint(0, classes, (len(x),))
    gates = find_gates(model)
    modules = dict(model.named_modules())
    precision = autocast(device, None if amp == "none" else amp)
    rows: list[dict[str, Any]] = []

    def measure(
        name: str, call: Callable[[nn.Module], Any], before: Callable[[int], Any] = lambda i: None,
        context: Any = contextlib.nullcontext(), after: Callable[[int], Any] = lambda i: None,
    ) -> None:
        """Times before(i), call(forward) and after(i) per batch, `forward` compiled inside `context`."""
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        if compile:
            torch._dynamo.reset()
        with context:
            forward = torch.compile(model) if compile else model

            def step(i: int) -> None:
                before(i)
                with torch.inference_mode(), precision:
                    call(forward)
                after(i)

            times = timed(step, batches, repeats, device)
        row = {"mode": name, **rate(batches * len(x), times)}
        row["ratio"] = row["images/s"] / rows[0]["images/s"] if rows else 1.0
        rows.append({**row, "peak MiB": peak_mib(device)})

    def run(forward: nn.Module) -> Any:
        return forward(x)

    measure("plain", run)

    if "collect" in modes:
        stats = GateStats(gates, StatsConfig(classes), device=device)
        ids = torch.arange(len(x))
        measure("collect", run, lambda i: stats.begin_batch(y, ids + i * len(x)), GateHooks(model, gates, stats),
                lambda i: stats.end_batch())
        stats.finish()
        stats.check()  # every gate saw every image: the hooks ran, compiled or not
        del stats  # out of the next modes' peak memory

    if "naive" in modes:
        copies: list[torch.Tensor] = []

        @contextlib.contextmanager
        def naive_hooks():
            handles = [modules[g.path].register_forward_hook(lambda m, i, o: copies.append(o.float().cpu())) for g in gates]
            try:
                yield
            finally:
                for h in handles:
                    h.remove()

        measure("naive host copy", run, lambda i: copies.clear(), naive_hooks())

    if "captum" in modes:
        try:
            from captum.attr import LayerActivation
        except ImportError:
            return rows
        layers = [modules[g.path] for g in gates]
        measure("captum LayerActivation", lambda forward: LayerActivation(forward, layers).attribute(x))
    return rows


def device_line(device: torch.device) -> str:
    """What ran the benchmark, for the line above a table."""
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    return f"device {device} ({where}), torch {torch.__version__}"


def print_table(rows: list[dict[str, Any]]) -> None:
    """Rows with the same keys as right-aligned columns; large numbers without decimals."""

    def cell(v: Any) -> str:
        if not isinstance(v, float):
            return str(v)
        if math.isnan(v):
            return "-"
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"

    columns = list(rows[0])
    cells = [[cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    for line in [columns, *cells]:
        print("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(line, widths))))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="se_resnet20")
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", choices=("none", *AMP_DTYPES), default="none")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    args = p.parse_args()

    device = torch.device(args.device)
    model, channels = build(args.model, args.classes, device, args.channels_last)
    x = torch.randn(args.batch, channels, args.size, args.size, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    rows = measure_modes(
        model, x, args.classes, amp=args.amp, compile=args.compile, batches=args.batches, repeats=args.repeats
    )
    print(f"model {args.model}, batch {args.batch}, size {args.size}, {device_line(device)}, "
          f"amp {args.amp}, channels_last {args.channels_last}, compile {args.compile}")
    print_table(rows)


if __name__ == "__main__":
    main()
