"""Operations launched per batch by GateStats (begin_batch, every gate's update, end_batch), counted and timed.

    python bench/stats_kernels.py [--classes 1000] [--batch 256] [--repeats 5]

On a GPU each such operation is at least one kernel of a few microseconds, so at SE-ResNet-50's
~25 ms per batch of 256 their count, more than their arithmetic, sets the cost of collection.
Counts every aten operation dispatched while one batch of random bf16 gates of SE-ResNet-50's 16
blocks (15,104 channels) is added, leaving out those that only make views or empty tensors. Runs
on the CPU: the count is the same on any device. The time per batch (median of --repeats, one
intra-op thread) is the CPU's; compare two versions by running each in turn, interleaved.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from analysis import GateStats, StatsConfig
from analysis.testing.planted import resnet_gates

NO_KERNEL = {"slice", "select", "view", "expand", "t", "transpose", "as_strided", "alias", "detach", "unsqueeze",
             "_unsafe_view", "reshape", "lift_fresh", "split", "unbind", "empty", "new_empty"}


class CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        name = func.overloadpacket.__name__
        if name not in NO_KERNEL:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    gates = resnet_gates()
    stats = GateStats(gates, StatsConfig(args.classes, calibration=2))
    values = {g.name: torch.rand(args.batch, g.channels).bfloat16() for g in gates}

    def one_batch(i: int) -> None:
        stats.begin_batch(torch.randint(0, args.classes, (args.batch,)), torch.arange(i * args.batch, (i + 1) * args.batch))
        for g in gates:
            stats.update(g.name, values[g.name])
        stats.end_batch()

    one_batch(0)  # calibrates (StatsConfig.calibration=2): the batches below are added at once
    counter = CountOps()
    with counter:
        one_batch(1)
    times = []
    for i in range(args.repeats):
        start = time.perf_counter()
        one_batch(2 + i)
        times.append(time.perf_counter() - start)
    print(f"{len(gates)} gates, {sum(g.channels for g in gates)} channels, {args.classes} classes, batch {args.batch}, "
          f"{stats.config.permutations} relabellings")
    print(f"operations per batch: {sum(counter.ops.values())}; most frequent: "
          + ", ".join(f"{name} {n}" for name, n in counter.ops.most_common(6)))
    print(f"ms per batch (CPU, 1 thread, median of {args.repeats}): {1000 * statistics.median(times):.1f}")


if __name__ == "__main__":
    main()
