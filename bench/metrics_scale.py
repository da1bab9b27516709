"""Time and memory of a run's tables at ImageNet scale, on planted GateStats.

    python bench/metrics_scale.py [--classes 10,100,1000] [--threads 1] [--probe-max-classes N] [--tiny]

16 blocks with SE-ResNet-50's channel counts (15,104 channels), K classes, 50 images per class,
StatsConfig's shards, relabellings and bins with 16 reservoir vectors per class, made by
`analysis.testing.planted.planted_stats`. Each K runs in a process of its own, so that its
peak memory (max RSS) is its own. One row per K: wall and CPU seconds of each table (best of
--repeats), of which the logistic probes (the probe and its control task, every block), the
statistics' size, the process's peak RSS. --probe-max-classes: the probes' class cap (default the library's,
PROBE_MAX_CLASSES), to see what it costs. --tiny: 2 small blocks, K = 5 (the CI smoke test).
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from analysis.testing.planted import planted_stats, resnet_gates
from analysis.measures import tables
from analysis.measures.probe import PROBE_MAX_CLASSES

TINY_CHANNELS, TINY_STAGES = (16, 32), (1, 1)


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process over all its threads, result) of the fastest run."""
    runs, out = [], None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        runs.append((time.perf_counter() - w0, time.process_time() - c0))
    wall, cpu = min(runs)
    return wall, cpu, out


def charged(function: Callable, spent: list[float]) -> Callable:
    """`function`, adding the CPU seconds of each call to spent[0]."""

    def timed_call(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        start = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent[0] += time.process_time() - start

    return timed_call


def measure(classes: int, repeats: int, tiny: bool, cap: int) -> dict[str, float]:
    """The row of one K, measured in this process."""
    gates = resnet_gates(TINY_CHANNELS, TINY_STAGES) if tiny else resnet_gates()
    stats = planted_stats(gates, classes)
    size = sum(t.numel() * t.element_size() for t in stats.fused.values())
    t_ch, c_ch, channels = timed(lambda: tables.channel_table(stats), repeats)
    spent = [0.0]  # the logistic probes' share of block_table (both probes of every block)
    tables.probe = charged(tables.probe, spent)
    t_bl, c_bl, _ = timed(lambda: tables.block_table(stats, channels=channels, probe_max_classes=cap), repeats)
    c_pr = spent[0] / repeats
    t_cm, c_cm, _ = timed(lambda: tables.class_mean_table(stats), 1)
    return {"classes": classes, "channels": sum(g.channels for g in gates), "stats_gib": size / 2**30,
            "channel_table": c_ch, "block_table": c_bl, "probes": c_pr, "class_mean_table": c_cm,
            "wall": t_ch + t_bl + t_cm, "cpu": c_ch + c_bl + c_cm,
            "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


COLUMNS = [("classes", "K", "{:.0f}"), ("channels", "channels", "{:.0f}"), ("stats_gib", "stats GiB", "{:.2f}"),
           ("channel_table", "channels cpu s", "{:.2f}"), ("block_table", "blocks cpu s", "{:.2f}"),
           ("probes", "of which probes", "{:.2f}"), ("class_mean_table", "class means cpu s", "{:.2f}"),
           ("cpu", "all cpu s", "{:.2f}"), ("wall", "all wall s", "{:.2f}"), ("peak_gib", "peak RSS GiB", "{:.2f}")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", default="10,100,1000", help="comma-separated K, one process each")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--probe-max-classes", type=int, default=PROBE_MAX_CLASSES, help="the probes' class cap")
    ap.add_argument("--tiny", action="store_true", help="2 small blocks, K = 5: does it run (CI)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: measure this K, print JSON
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.one is not None:
        print(json.dumps(measure(args.one, args.repeats, args.tiny, args.probe_max_classes)))
        return
    ks = [5] if args.tiny else [int(k) for k in args.classes.split(",")]
    rows, failed = [], []
    for k in ks:
        command = [sys.executable, __file__, "--one", str(k), "--threads", str(args.threads), "--repeats",
                   str(args.repeats), "--probe-max-classes", str(args.probe_max_classes), *(["--tiny"] if args.tiny else [])]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode == 0:
            rows.append(json.loads(done.stdout))
        else:  # SIGKILL is how the kernel ends a process out of memory
            how = "was killed (out of memory?)" if done.returncode == -signal.SIGKILL else f"exited {done.returncode}"
            failed.append(f"K = {k}: the process {how}; {done.stderr.strip()[-1000:] or 'no error printed'}")
    print(f"tables of planted GateStats, {args.threads} intra-op thread(s), best of {args.repeats}, "
          f"probes on at most {args.probe_max_classes} classes")
    print("".join(f"{title:>18}" for _, title, _ in COLUMNS))
    for row in rows:
        print("".join(f"{fmt.format(row[key]):>18}" for key, _, fmt in COLUMNS))
    if failed:
        sys.exit("\n".join(failed))


if __name__ == "__main__":
    main()
