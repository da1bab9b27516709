"""Wall time of the metrics at ImageNet scale on synthetic statistics.

    python bench/metrics_scale.py [--classes 1000] [--val-per-class 50] [--threads 2] [--int32-hist]

16 blocks with SE-ResNet-50's channel counts (15,104 channels), K classes, S=8 shards, B=20 bins,
16 reservoir vectors per class. `histogram()` widens the stored int32 counts to int64 on every call,
as GateStats does; --int32-hist hands them over as stored. Prints one row per step: seconds (best
of --repeats) and output size.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field

import torch

from analysis import measures

CHANNELS = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3


@dataclass(frozen=True)
class Gate:
    name: str
    depth: int
    path: str
    channels: int


@dataclass
class SyntheticStats:
    """GateStats' reading interface over random tensors of the right shapes and dtypes."""

    gates: list[Gate]
    num_classes: int
    class_names: list[str]
    tensors: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    widen_hist: bool = True

    def moments(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = self.tensors[name]
        return t["count"], t["sum"], t["sumsq"]

    def histogram(self, name: str) -> torch.Tensor:
        hist = self.tensors[name]["hist"]
        return hist.long() if self.widen_hist else hist  # GateStats keeps int32, widens on reading

    def reservoir(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = self.tensors[name]
        return t["values"], t["labels"], torch.arange(t["labels"].numel())


def synthetic(classes: int, per_class: int, shards: int, bins: int, reservoir: int) -> SyntheticStats:
    g = torch.Generator().manual_seed(0)
    gates = [Gate(f"SE_{i + 1}", i + 1, f"layer.{i}.se", c) for i, c in enumerate(CHANNELS)]
    stats = SyntheticStats(gates, classes, [f"class {k}" for k in range(classes)])
    count = torch.multinomial(torch.ones(shards), classes * per_class, replacement=True, generator=g)
    count = torch.stack([torch.bincount(count[k * per_class : (k + 1) * per_class], minlength=shards)
                         for k in range(classes)], 1)  # [S, K]
    labels = torch.arange(classes).repeat_interleave(reservoir)
    for gate in gates:
        c = gate.channels
        mean = torch.rand(1, classes, c, generator=g, dtype=torch.float64) * 0.6 + 0.2
        n = count.to(torch.float64)[:, :, None]
        total = n * mean
        stats.tensors[gate.name] = {
            "count": count,
            "sum": total,
            "sumsq": total * mean + n * 0.01,
            "hist": torch.poisson(torch.full((classes, c, bins), per_class / bins), generator=g).int(),
            "values": torch.rand(classes * reservoir, c, generator=g),
            "labels": labels,
        }
    return stats


def best(fn, repeats: int) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process over all its threads, result) of the fastest run."""
    runs, out = [], None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        runs.append((time.perf_counter() - w0, time.process_time() - c0))
    wall, cpu = min(runs)
    return wall, cpu, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--val-per-class", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--int32-hist", action="store_true", help="histogram() returns int32, unwidened")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    stats = synthetic(args.classes, args.val_per_class, shards=8, bins=20, reservoir=16)
    stats.widen_hist = not args.int32_hist
    t_ch, c_ch, channels = best(lambda: measures.channel_table(stats), args.repeats)
    t_bl, c_bl, blocks = best(lambda: measures.block_table(stats, channels=channels), args.repeats)
    t_pr, c_pr, _ = best(lambda: [measures.probe(*stats.reservoir(g.name)[:2]) for g in stats.gates], args.repeats)
    t_cm, c_cm, means = best(lambda: measures.class_mean_table(stats), 1)
    print(f"K={args.classes}, {sum(CHANNELS)} channels in {len(CHANNELS)} blocks, "
          f"{args.threads} threads, histogram {'int32' if args.int32_hist else 'int64'}")
    print(f"{'step':<34}{'wall s':>8}{'cpu s':>8}{'rows':>12}")
    for name, wall, cpu, rows in [
        ("channel_table", t_ch, c_ch, len(channels)),
        ("block_table(channels=...)", t_bl, c_bl, len(blocks)),
        ("  of which probe (all blocks)", t_pr, c_pr, ""),
        ("channel_table + block_table", t_ch + t_bl, c_ch + c_bl, ""),
        ("class_mean_table", t_cm, c_cm, len(means)),
    ]:
        print(f"{name:<34}{wall:>8.2f}{cpu:>8.2f}{rows:>12}")

if __name__ == "__main__":
    main()
