"""Dashboard load and interaction times on an ImageNet-scale run (planted, synthetic).

    python bench/dashboard_scale.py [--runs /tmp/imagenet_runs] [--classes 1000] [--per-class 50]

Makes (once) a run with SE-ResNet-50's 16 blocks (15,104 gate channels) and K classes from
analysis.testing.planted, then drives the real app with Streamlit's AppTest, the way a user clicks:
every page, then new choices on each page. Prints one row per step with its wall time; the
first row is the first load of the run (tables and class means read, cached afterwards).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from analysis.jobs import save_run
from analysis.runs.folder import load_run
from analysis.capture.stats import StatsConfig
from analysis.testing.planted import planted_stats, resnet_gates

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


def make_run(root: Path, classes: int, per_class: int) -> Path:
    path = root / f"synthetic_{classes}"
    if not (path / "meta.json").exists():
        t = time.perf_counter()
        stats = planted_stats(resnet_gates(), classes, per_class, config=StatsConfig(num_classes=classes, reservoir=16))
        save_run(stats, path, {"model": "synthetic SE-ResNet-50 layout", "data": {"spec": "synthetic"}}, overwrite=True)
        print(f"made {path} in {time.perf_counter() - t:.0f} s")
    size = sum(f.stat().st_size for f in path.iterdir()) / 2**30
    blocks = load_run(path).blocks
    print(f"run: {classes} classes, {len(blocks)} blocks, {blocks['channels'].sum():,} channels, {size:.1f} GiB on disk")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("/tmp/imagenet_runs"))
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=50)
    args = parser.parse_args()
    make_run(args.runs, args.classes, args.per_class)
    os.environ["SE_ANALYSIS_RUNS"] = str(args.runs)
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=600)
    rows = []

    def step(name: str, action=None) -> None:
        if action:
            action()
        t = time.perf_counter()
        at.run()
        rows.append((name, time.perf_counter() - t))
        if at.exception or at.error:
            raise SystemExit(f"{name}: {[e.value for e in at.exception] or [e.value for e in at.error]}")

    step("first load: Overview")
    step("Overview again")
    step("Block explorer (6 blocks, 4 classes, heatmap 1000 x 2048)", lambda: at.switch_page("screens/blocks.py"))
    step("  heatmap/distribution block -> SE_4_6", lambda: at.selectbox[0].set_value("SE_4_6"))
    step("  mean and spread on", lambda: at.toggle[0].set_value(True))
    step("  classes -> 3 others", lambda: at.multiselect[1].set_value([1, 500, 998]))
    step("Channel explorer", lambda: at.switch_page("screens/channels.py"))
    step("  channel -> 7", lambda: at.number_input[0].set_value(7))
    step("  block -> SE_3_2", lambda: at.selectbox[0].set_value("SE_3_2"))
    step("Classes (similarity 1000 x 1000)", lambda: at.switch_page("screens/classes.py"))
    step("  class -> 421", lambda: at.selectbox[1].set_value(421))
    step("  block -> SE_4_1", lambda: at.selectbox[0].set_value("SE_4_1"))
    step("Compare", lambda: at.switch_page("screens/compare.py"))
    step("Overview (cached)", lambda: at.switch_page("screens/overview.py"))
    width = max(len(name) for name, _ in rows)
    print(f"{'step':<{width}}  seconds")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.2f}")
    later = [s for _, s in rows[1:]]
    print(f"after the first load: max {max(later):.2f} s, median {sorted(later)[len(later) // 2]:.2f} s")


if __name__ == "__main__":
    main()
