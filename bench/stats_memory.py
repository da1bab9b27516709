"""Memory of GateStats per field, from the field table (capture.fields), at any scale.

    python bench/stats_memory.py [--classes 1000] [--permutations 99] [--allocate]

Prints, for SE-ResNet-50's 16 gates (15,104 channels), the bytes each field takes in the gates'
statistics and in the squeezed inputs' (z, `StatsConfig.squeezed`), as `Layout` allocates them.
With --allocate, the statistics are also allocated, and the bytes of their tensors are checked
against the table's sum (`GateStats` allocates nothing else that grows with the classes).
"""

from __future__ import annotations

import argparse

from analysis.capture.config import StatsConfig
from analysis.capture.fields import Layout
from analysis.testing.planted import resnet_gates
from analysis.capture.stats import GateStats

MIB = 2**20


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--permutations", type=int, default=StatsConfig.permutations)
    p.add_argument("--allocate", action="store_true")
    args = p.parse_args()
    gates = resnet_gates()
    config = StatsConfig(args.classes, permutations=args.permutations)
    channels = [g.channels for g in gates]
    parts = {"gates": Layout(config, channels).nbytes(), "z": Layout(config.squeezed(), channels).nbytes()}
    print(f"{len(gates)} gates, {sum(channels)} channels, {args.classes} classes, {args.permutations} relabellings, "
          f"{config.reservoir} reservoir vectors per class, {config.shards} shards, {config.bins} bins")
    print(f"{'field':<12}{'gates MiB':>12}{'z MiB':>12}")
    for name in parts["gates"]:
        print(f"{name:<12}{parts['gates'][name] / MIB:>12.1f}{parts['z'].get(name, 0) / MIB:>12.1f}")
    totals = {part: sum(sizes.values()) for part, sizes in parts.items()}
    print(f"{'total':<12}{totals['gates'] / MIB:>12.1f}{totals['z'] / MIB:>12.1f}   "
          f"together {(totals['gates'] + totals['z']) / 2**30:.2f} GiB")
    if args.allocate:
        stats = GateStats(gates, config, inputs=GateStats(gates, config.squeezed()))
        for part, s in (("gates", stats), ("z", stats.inputs)):
            held = sum(t.numel() * t.element_size() for t in s.fused.values())
            print(f"allocated {part}: {held / MIB:.1f} MiB (table: {totals[part] / MIB:.1f})")


if __name__ == "__main__":
    main()
