"""What the untrained controls cost: `se-analysis demo` with and without them, and one collection pass
of the trained network against one control pass, each in a fresh process (wall time, peak memory).

    .venv/bin/python bench/control_cost.py [--rounds 2] [--threads 1] [--tiny]

Runs interleave (A B A B) so that a machine shared with other work slows both alike; the load
average is printed beside each row. Prints one table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PASS = """
import json, resource, sys, time, torch
torch.set_num_threads({threads})
from analysis.capture.collect import collect, control_config
from analysis.capture.stats import StatsConfig
from analysis.data import make_loader, open_data
from analysis.models.checkpoint import load_checkpoint
from analysis.models.controls import untrained
source = open_data("fashion-mnist:test")
model, _ = load_checkpoint("{checkpoint}")
start = time.perf_counter()
config = StatsConfig(10)
if {control}:
    model = untrained(model, 1, source)
    config = control_config(config)
collect(model, make_loader(source, 250, limit={limit}), 10, config=config, inputs=not {control}, progress=False)
print(json.dumps({{"seconds": time.perf_counter() - start, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""
DEMO = """
import json, resource, sys, time
from analysis.cli import main
start = time.perf_counter()
assert main({argv!r}) == 0
print(json.dumps({{"seconds": time.perf_counter() - start, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def measured(code: str, threads: int) -> dict[str, float]:
    """{"seconds", "peak_mib"} that a fresh process running `code` reports of itself."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", default=str(Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist_se20"))
    parser.add_argument("--tiny", action="store_true", help="the passes only, 100 images, one round (the smoke test)")
    args = parser.parse_args()
    images, control_images, rounds = (100, 50, 1) if args.tiny else (10000, 2000, args.rounds)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        demo = ["demo", "--out", f"{tmp}/demo", "--reports", f"{tmp}/reports", "--quiet", "--limit", str(images),
                "--control-limit", str(control_images)]
        cases = {} if args.tiny else {  # the smoke test leaves the demos out (each writes a report)
            f"demo, controls (3 seeds x {control_images} images)": DEMO.format(argv=demo),
            "demo, --control none": DEMO.format(argv=[*demo, "--control", "none"]),
        }
        for name, limit, control in ((f"pass: trained, {images} images", images, False),
                                     (f"pass: one control, {images} images", images, True),
                                     (f"pass: one control, {control_images} images", control_images, True)):
            cases[name] = PASS.format(threads=args.threads, checkpoint=args.checkpoint, control=control, limit=limit)
        for round_ in range(rounds):
            for name, code in cases.items():
                found = measured(code, args.threads)
                rows.append((round_, name, found["seconds"], found["peak_mib"], os.getloadavg()[0]))
    print(f"{args.threads} intra-op thread(s); load average of the machine (2 cores) after each run")
    print(f"{'round':>5}  {'case':<42} {'seconds':>8} {'peak MiB':>9} {'load (1 min)':>13}")
    for round_, name, seconds, peak, load in rows:
        print(f"{round_:>5}  {name:<42} {seconds:>8.1f} {peak:>9.0f} {load:>13.1f}")


if __name__ == "__main__":
    main()
