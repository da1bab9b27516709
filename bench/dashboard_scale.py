"""Dashboard load and interaction times on an ImageNet-scale run (planted, synthetic).

    python bench/dashboard_scale.py [--runs /tmp/imagenet_runs] [--classes 1000] [--per-class 50] [--repeats 3]
    python bench/dashboard_scale.py --tiny        # a small run, one pass: a smoke test of the bench itself

Makes (once) a run with SE-ResNet-50's 16 blocks (15,104 gate channels) and K classes from
analysis' planted statistics, then drives the real app with Streamlit's AppTest the way a user
clicks: the first load of the run, then every page and new choices on each page. Each pass starts
with empty caches (the operating system's file cache stays warm), so every step draws what it
shows afresh; the app's modules are imported before the first pass, as a server imports them
once. Prints the machine's load before and after, and per step the min, median and max
wall time over the passes. The browser's own drawing is not included (each chart it draws is an
image or a few thousand marks).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import streamlit as st
from streamlit.testing.v1 import AppTest

import dashboard.loaders  # noqa: F401  imported once (matplotlib, seaborn, altair), as a server does at start
from analysis.capture.stats import StatsConfig
from analysis.jobs import save_run
from analysis.presentation import views
from analysis.resources import dashboard_app
from analysis.runs.folder import load_run
from analysis.testing.planted import planted_stats, resnet_gates

STEPS_FIRST = "first load: Overview (run opened and checked, class means read, Block explorer drawn)"


def make_run(root: Path, classes: int, per_class: int, channels: tuple[int, ...] | None) -> Path:
    path = root / (f"synthetic_{classes}" + ("" if channels is None else "_tiny"))
    if not (path / "meta.json").exists():
        t = time.perf_counter()
        gates = resnet_gates() if channels is None else resnet_gates(channels)
        stats = planted_stats(gates, classes, per_class, config=StatsConfig(num_classes=classes, reservoir=16))
        save_run(stats, path, {"model": "synthetic SE-ResNet-50 layout", "data": {"spec": "synthetic"}}, overwrite=True)
        print(f"made {path} in {time.perf_counter() - t:.0f} s")
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**30
    blocks = load_run(path).blocks
    print(f"run: {classes} classes, {len(blocks)} blocks, {blocks['channels'].sum():,} channels, {size:.2f} GiB on disk")
    return path


def load() -> str:
    """The load averages over 1, 5 and 15 minutes (what `uptime` prints)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def journey(at, run: str, blocks: list[str], channels: list[int], classes: list[int]) -> list[tuple[str, Callable[[], None] | None]]:
    """The steps of one pass: (name, what the user does before the app reruns)."""
    def choose(kind: str, label: str, value) -> Callable[[], None]:
        def action() -> None:
            [widget] = [w for w in getattr(at, kind) if w.label == label]
            widget.set_value(value)
        return action

    def page(file: str, **params: str) -> Callable[[], None]:
        def action() -> None:
            at.query_params.update({"run": run, **params})
            at.switch_page(file)
        return action

    mid, late, last = blocks[len(blocks) // 2], blocks[-3], blocks[-1]
    others = [classes[1], classes[len(classes) // 2], classes[-2]]
    return [
        (STEPS_FIRST, None),
        ("Overview again (a rerun)", None),
        ("Block explorer (defaults: profiles, heatmap, distributions)", page("screens/blocks.py")),
        (f"  block for the heatmap -> {last}", choose("selectbox", "block for the heatmap and distributions", last)),
        ("  mean and spread on", choose("toggle", "mean and spread (+- one within-class std)", True)),
        ("  classes -> 3 others", choose("multiselect", "classes", others)),
        ("Channel explorer (a heatmap click: block and channel in the address)",
         page("screens/channels.py", block=late, channel=str(channels[-3] // 3))),
        (f"  channel -> {channels[-3] // 2}", choose("selectbox", "channel", channels[-3] // 2)),
        (f"  block -> {mid}", choose("selectbox", "block", mid)),
        ("Classes (similarity matrix)", page("screens/classes.py")),
        (f"  class -> {others[1]}", choose("selectbox", "class", others[1])),
        (f"  block -> {late}", choose("selectbox", "block", late)),
        ("Compare", page("screens/compare.py")),
        ("Interventions (none measured)", page("screens/interventions.py")),
        ("Overview (cached)", page("screens/overview.py")),
    ]


def one_pass(app: Path, runs: Path, run: str) -> list[tuple[str, float]]:
    """Every step of a journey from empty caches: (step, seconds)."""
    st.cache_data.clear()
    st.cache_resource.clear()
    opened = load_run(runs / run)
    at = AppTest.from_file(str(app), default_timeout=600)
    at.query_params["run"] = run
    times = []
    steps = journey(at, run, views.block_names(opened), opened.blocks["channels"].tolist(), views.present_classes(opened))
    for name, action in steps:
        if action:
            action()
        t = time.perf_counter()
        at.run()
        times.append((name, time.perf_counter() - t))
        if at.exception or at.error:
            raise SystemExit(f"{name}: {[e.value for e in at.exception] or [e.value for e in at.error]}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("/tmp/imagenet_runs"))
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="passes, each from empty caches")
    parser.add_argument("--tiny", action="store_true", help="10 classes, narrow blocks, one pass: a smoke test")
    args = parser.parse_args()
    if args.tiny:
        args.classes, args.per_class, args.repeats = 10, 20, 1
    os.environ["SE_ANALYSIS_RUNS"] = str(args.runs)
    path = make_run(args.runs, args.classes, args.per_class, (8,) * 16 if args.tiny else None)
    print(f"machine: {os.cpu_count()} cores; load average (1, 5, 15 min) before: {load()}")
    passes = [one_pass(dashboard_app(), args.runs, path.name) for _ in range(args.repeats)]
    print(f"load average after: {load()}")
    width = max(len(name) for name, _ in passes[0])
    print(f"\n{'step':<{width}}  {'min':>6}  {'median':>6}  {'max':>6}   seconds over {len(passes)} passes")
    for i, (name, _) in enumerate(passes[0]):
        times = [p[i][1] for p in passes]
        print(f"{name:<{width}}  {min(times):6.2f}  {statistics.median(times):6.2f}  {max(times):6.2f}")
    later = [p[i][1] for p in passes for i in range(1, len(p))]
    print(f"\ninteractions after the first load: median {statistics.median(later):.2f} s, max {max(later):.2f} s; "
          f"{sum(t >= 1 for t in later)} of {len(later)} took 1 s or more")


if __name__ == "__main__":
    main()
