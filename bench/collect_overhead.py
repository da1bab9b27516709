"""Cost of gate collection over plain inference, on tensors already on the device.

    python bench/collect_overhead.py                                   # small SE-ResNet, CPU
    python bench/collect_overhead.py --model timm:seresnet50 --size 224 --batch 256 \
        --device cuda --amp bf16 --channels-last --compile

Prints one row per mode: images/s (median of --repeats timed passes over --batches batches, after
warm-up), the ratio to plain inference, and peak GPU memory. Modes: plain; collect (GateHooks +
GateStats, everything the statistics keep); naive (hooks that copy each gate to a host list);
captum (LayerActivation on every gate, when captum is installed).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch

from analysis import GateHooks, GateStats, StatsConfig, find_gates
from analysis.collect import AMP_DTYPES
from analysis.modelspec import build_from_spec, input_shape


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step, batches: int, repeats: int, device: torch.device) -> float:
    """Median seconds for `batches` calls of step(i), after two warm-up passes."""
    for _ in range(2):
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
    return statistics.median(times)


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
    in_channels = 1 if args.model.startswith("se_") else None
    model, _ = build_from_spec(args.model, random_init=True, num_classes=args.classes, in_channels=in_channels)
    channels, _ = input_shape(model)
    model = model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, channels, args.size, args.size, device=device)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, args.classes, (args.batch,))
    gates = find_gates(model)
    forward = torch.compile(model) if args.compile else model
    autocast = torch.autocast(device.type, AMP_DTYPES[args.amp]) if args.amp != "none" else contextlib.nullcontext()

    def run(before=lambda i: None):
        def step(i: int) -> None:
            before(i)
            with torch.inference_mode(), autocast:
                forward(x)

        return step

    rows = []

    def measure(name: str, step, context=contextlib.nullcontext()) -> None:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with context:
            seconds = timed(step, args.batches, args.repeats, device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        rows.append((name, args.batches * args.batch / seconds, peak))

    measure("plain", run())

    stats = GateStats(gates, StatsConfig(args.classes), device=device)
    ids = torch.arange(args.batch)
    measure(
        "collect",
        run(lambda i: stats.begin_batch(y, ids + i * args.batch)),
        GateHooks(model, gates, stats),
    )

    copies: list[torch.Tensor] = []
    modules = dict(model.named_modules())

    @contextlib.contextmanager
    def naive_hooks():
        handles = [modules[g.path].register_forward_hook(lambda m, i, o: copies.append(o.float().cpu())) for g in gates]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    measure("naive host copy", run(lambda i: copies.clear()), naive_hooks())

    try:
        from captum.attr import LayerActivation

        layers = [modules[g.path] for g in gates]
        captum = LayerActivation(forward, layers)

        def captum_step(i: int) -> None:
            with torch.inference_mode(), autocast:
                captum.attribute(x)

        measure("captum LayerActivation", captum_step)
    except ImportError:
        pass

    plain = rows[0][1]
    print(f"model {args.model}, batch {args.batch}, size {args.size}, device {device}"
          f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else f' ({torch.get_num_threads()} threads)'}, "
          f"amp {args.amp}, channels_last {args.channels_last}, compile {args.compile}, torch {torch.__version__}")
    print(f"{'mode':<24}{'images/s':>12}{'ratio':>8}{'peak MiB':>10}")
    for name, rate, peak in rows:
        print(f"{name:<24}{rate:>12.0f}{rate / plain:>8.3f}{peak:>10.0f}")


if __name__ == "__main__":
    main()
