"""Cost of gate collection over plain inference: the CPU rows of issue 24, and helpers other benches use.

    python bench/collect_overhead.py                      # every row, 1 thread, two tables
    python bench/collect_overhead.py --rows se20-fp32,se20-bf16 --rounds 6
    python bench/collect_overhead.py --smoke              # tiny sizes, a few seconds (CI: it starts and prints)
    PYTHONPATH=/tmp/before python bench/collect_overhead.py   # the same rows on another checkout

Rows: the shipped SE-ResNet-20 (batch 256, 28 px) and timm seresnet50 (random weights, BatchNorm set
on one batch, batch 16, 160 px, 10 classes), eager fp32, eager bf16 autocast, compiled. Per row,
plain inference and collection (GateHooks + GateStats with the squeezed inputs z, per batch what
`collect` does) alternate in one process, A B B A ..., over --rounds rounds of --batches batches
each after one warm-up round (which compiles); the ratio is plain time / collect time per round
(collection's share of plain throughput), its median and range over rounds. Second table, eager rows:
each torch call of --profiled collection batches charged to the part of the project that issued it
(bench/op_parts.py), ms per batch as profiled, beside the timed overhead; "Python and the rest" is the
timed overhead minus the parts' op time. `measure_modes` (naive host copies, captum) is the GPU
comparison of bench/gpu_throughput.py, which reuses the helpers here, as do jpeg_pipeline.py and
traced_gates.py.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import math
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from op_parts import PARTS, OpParts
from torch import nn

import analysis
from analysis import GateHooks, GateStats, StatsConfig, find_gates
from analysis.capture import collect as collecting
from analysis.models.precision import AMP_DTYPES, autocast
from analysis.models.spec import build_from_spec, input_shape

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist_se20"


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
        stats = GateStats(gates, StatsConfig(classes, calibration=len(x)), device=device)  # timed batches add
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


@dataclass(frozen=True)
class Row:
    """One row: a model spec ("shipped": the checkpoint), its batch, image size, autocast and compile."""

    model: str
    batch: int
    size: int
    amp: str
    compile: bool


ROWS = {
    "se20-fp32": Row("shipped", 256, 28, "none", False),
    "se20-bf16": Row("shipped", 256, 28, "bf16", False),
    "se20-compiled": Row("shipped", 256, 28, "none", True),
    "seresnet50-fp32": Row("timm:seresnet50", 16, 160, "none", False),
    "seresnet50-bf16": Row("timm:seresnet50", 16, 160, "bf16", False),
    "seresnet50-bf16-compiled": Row("timm:seresnet50", 16, 160, "bf16", True),
}
SMOKE = {
    "se20-fp32": Row("shipped", 8, 28, "none", False),
    "se20-bf16": Row("shipped", 8, 28, "bf16", False),
    "seresnet18-fp32": Row("timm:seresnet18", 2, 32, "none", False),
}
CLASSES = 10


def row_model(row: Row) -> tuple[nn.Module, torch.Tensor]:
    """(model in eval mode, a batch of inputs) for a row, on the CPU."""
    torch.manual_seed(0)
    shipped = row.model == "shipped"
    model, _ = build_from_spec(str(SHIPPED)) if shipped else build_from_spec(row.model, random_init=True)
    x = torch.randn(row.batch, input_shape(model)[0], row.size, row.size)
    if not shipped:
        calibrate_batchnorm(model, x)
    return model.eval(), x


def _stats(model: nn.Module, x: torch.Tensor) -> GateStats:
    """Empty statistics of every gate with the squeezed inputs, as `collect` makes them (on either
    checkout: `new_stats`, or `with_inputs` before it). Calibrated on the first batch: with the default
    512 samples, a row of few small batches would hold them all raw and time no statistics."""
    gates = find_gates(model, example=x[:2])
    if hasattr(collecting, "new_stats"):
        config = StatsConfig(CLASSES, calibration=len(x))
        return collecting.new_stats(model, gates, config, None, torch.device("cpu"), True, None)
    return collecting.with_inputs(model, GateStats(gates, StatsConfig(CLASSES)))


def steps(row: Row, model: nn.Module, x: torch.Tensor, stack: contextlib.ExitStack) -> dict[str, Callable[[int], Any]]:
    """{"plain": step, "collect": step}: one batch each; the collecting copy's hooks live in `stack`."""
    precision = autocast(x.device, None if row.amp == "none" else row.amp)
    hooked = copy.deepcopy(model)
    stats = _stats(hooked, x)
    stack.enter_context(GateHooks(hooked, stats.gates, stats))
    finish = getattr(stats, "end_batch", lambda: None)
    if row.compile:  # the plain copy as a frame of its own, so that neither lends the other its graph
        plain, hooked_forward = torch.compile(lambda t: model(t)), getattr(collecting, "compiled", torch.compile)(hooked)
    else:
        plain, hooked_forward = model, hooked
    y = torch.randint(0, CLASSES, (len(x),), generator=torch.Generator().manual_seed(0))
    ids = torch.arange(len(x))

    def plain_step(i: int) -> None:
        with torch.inference_mode(), precision:
            plain(x)

    def collect_step(i: int) -> None:
        stats.begin_batch(y, ids + i * len(x))
        with torch.inference_mode(), precision:
            hooked_forward(x)
        finish()

    return {"plain": plain_step, "collect": collect_step}


def interleave(step: dict[str, Callable[[int], Any]], rounds: int, batches: int) -> dict[str, list[float]]:
    """Seconds per batch of each step, per round, after a warm-up round; A B B A A B ..."""
    seconds: dict[str, list[float]] = {name: [] for name in step}
    names, i = list(step), 0
    for r in range(rounds + 1):
        for name in names if r % 2 else names[::-1]:
            start = time.perf_counter()
            for _ in range(batches):
                step[name](i)
                i += 1
            if r:
                seconds[name].append((time.perf_counter() - start) / batches)
    return seconds


def profiled(step: Callable[[int], Any], batches: int, first: int) -> OpParts:
    parts = OpParts()
    with parts:
        for i in range(batches):
            step(first + i)
    return parts


def measure_row(name: str, row: Row, rounds: int, batches: int, profile: int) -> tuple[dict, dict | None]:
    """(the ratio row, the parts row or None for compiled rows)."""
    model, x = row_model(row)
    with contextlib.ExitStack() as stack:
        step = steps(row, model, x, stack)
        seconds = interleave(step, rounds, batches)
        ratios = [p / c for p, c in zip(seconds["plain"], seconds["collect"])]
        plain_ms, collect_ms = (1000 * statistics.median(seconds[k]) for k in ("plain", "collect"))
        ops = {k: profiled(step[k], 1, 10**6 + i) for i, k in enumerate(step)} if not row.compile else {}
        ratio = {"row": name, "batch": row.batch, "plain ms": plain_ms, "collect ms": collect_ms,
                 "ratio": statistics.median(ratios), "low": min(ratios), "high": max(ratios),
                 "calls plain": sum(ops["plain"].calls.values()) if ops else math.nan,
                 "calls collect": sum(ops["collect"].calls.values()) if ops else math.nan}
        if row.compile:
            return ratio, None
        parts = profiled(step["collect"], profile, 2 * 10**6)
    ms = {part: parts.ms.get(part, 0.0) / profile for part in PARTS}
    overhead = collect_ms - plain_ms
    spent = sum(v for k, v in ms.items() if k != "network")
    return ratio, {"row": name, **{k: v for k, v in ms.items() if k != "network"}, "stats ops": spent,
                   "timed overhead": overhead, "Python and the rest": overhead - spent, "network (profiled)": ms["network"]}


def checkout() -> str:
    """Which code ran: the package's folder and its git commit."""
    folder = Path(analysis.__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"{folder} at {commit.stdout.strip() or '?'}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", help=f"comma-separated, of {', '.join(ROWS)} (default: all)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--batches", type=int, default=2, help="batches per mode and round")
    p.add_argument("--profiled", type=int, default=2, help="collection batches charged to parts, eager rows")
    p.add_argument("--smoke", action="store_true", help="tiny rows, one round: that it starts and prints its tables")
    args = p.parse_args()
    torch.set_num_threads(1)
    table = SMOKE if args.smoke else ROWS
    names = args.rows.split(",") if args.rows else list(table)
    rounds, batches, profile = (1, 1, 1) if args.smoke else (args.rounds, args.batches, args.profiled)
    ratios, parts = [], []
    for name in names:
        ratio, part = measure_row(name, table[name], rounds, batches, profile)
        ratios.append(ratio)
        parts += [part] if part else []
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{checkout()}; torch {torch.__version__}, 1 intra-op thread, CPU shared (load average {load}); "
          f"{rounds} rounds x {batches} batches per mode, interleaved")
    print_table(ratios)
    if parts:
        print(f"\nms per batch of collection, each torch call charged to the part that issued it ({profile} batches profiled)")
        print_table(parts)


if __name__ == "__main__":
    main()
