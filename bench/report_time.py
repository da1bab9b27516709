"""Time `se-analysis report RUN ... --pdf` of one or more source trees, interleaved (A B A B), one thread.

    .venv/bin/python bench/report_time.py runs/demo runs/other                       # this checkout
    .venv/bin/python bench/report_time.py runs/demo runs/other --trees /tmp/main .   # another tree against this one

Each report runs in a fresh process (imports included, as a user's command) with OMP/MKL at one
thread; the table gives wall and CPU seconds (user + system of the process) per tree, min and median
over the repeats. On a shared machine compare the CPU seconds: wall time follows the load.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(tree: Path, runs: list[str], out: Path) -> tuple[float, float]:
    """(wall, cpu) seconds of one report command with the package imported from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "analysis", "report", *runs, "--out", str(out), "--pdf", "--quiet"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--trees", nargs="+", type=Path, default=[Path(".")],
                        help="source trees whose `analysis` package writes the reports")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    times: dict[Path, list[tuple[float, float]]] = {tree: [] for tree in args.trees}
    runs = [str(Path(r).resolve()) for r in args.runs]
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for i, tree in enumerate(args.trees):  # interleaved: every tree once per repeat
                times[tree].append(run_once(tree.resolve(), runs, Path(scratch) / f"{repeat}_{i}"))
    print(f"reports of {len(runs)} run(s) with --pdf, {args.repeats} repeats, interleaved, 1 thread")
    print(f"{'tree':40} {'wall min':>9} {'wall med':>9} {'cpu min':>9} {'cpu med':>9}")
    for tree, found in times.items():
        wall, cpu = [w for w, _ in found], [c for _, c in found]
        print(f"{str(tree):40} {min(wall):9.1f} {statistics.median(wall):9.1f} {min(cpu):9.1f} "
              f"{statistics.median(cpu):9.1f}")


if __name__ == "__main__":
    main()
