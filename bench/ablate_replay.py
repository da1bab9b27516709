"""`ablate` with and without the replay of what ran before each intervention's first changed gate.

    python bench/ablate_replay.py [--images 1000] [--batch 250] [--repeats 3] [--threads 1]
    python bench/ablate_replay.py --tiny          # 40 images, one repeat (the CI smoke test)

The shipped SE-ResNet-20 (checkpoints/fmnist_se20) over the first --images Fashion-MNIST test
images, against a run collected on them; the default `ablate` (13 groups x 4 interventions, 1000
bootstrap resamples). Modes, interleaved (A B A B) in one process so that a shared machine's drift
hits both alike: `full passes` (the replay switched off: one whole forward pass per intervention,
as before issue 24) and `prefix replayed` (what `ablate` does). Per mode: seconds per call (median
of --repeats, with the spread), images/s, convolutions run per batch (in units of one plain pass)
and the ratio to full passes; both modes' tables must be equal. The load average is printed before
and after: above the core count, other work shared the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from analysis import collect, save_run
from analysis.data import make_loader
from analysis.experiments.interventions import ablate
from analysis.experiments.replay import Prefix
from analysis.models.spec import open_model_and_data

SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "fmnist_se20"


class Convolutions(TorchDispatchMode):
    """Counts the convolutions dispatched inside the context."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        self.count += func.overloadpacket.__name__ in ("convolution", "conv2d")  # conv2d: under inference_mode
        return func(*args, **(kwargs or {}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--batch", type=int, default=250)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tiny", action="store_true", help="40 images, one repeat: does it run (CI)")
    args = p.parse_args()
    images, repeats = (40, 1) if args.tiny else (args.images, args.repeats)
    torch.set_num_threads(args.threads)
    model, _, source = open_model_and_data(str(SHIPPED), "fashion-mnist:test")
    batches = list(make_loader(source, args.batch, limit=images))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        run = save_run(collect(model, batches, source.num_classes, progress=False), Path(tmp) / "run")
        with torch.inference_mode(), Convolutions() as plain:
            model(batches[0][0])
        modes = {"full passes": mock.patch.object(Prefix, "before", lambda self, gate: []),
                 "prefix replayed": mock.patch.object(Prefix, "before", Prefix.before)}
        times: dict[str, list[float]] = {name: [] for name in modes}
        convolutions, tables = {}, {}
        for _ in range(repeats):
            for name, patch in modes.items():
                with patch, Convolutions() as counted:
                    start = time.perf_counter()
                    tables[name] = ablate(model, batches, run, progress=False)
                    times[name].append(time.perf_counter() - start)
                convolutions[name] = counted.count / len(batches) / plain.count
    full, replayed = tables.values()
    if not full.equals(replayed):
        raise SystemExit("the two modes' tables differ")
    print(f"ablate on {images} images of the shipped SE-ResNet-20, batch {args.batch}, {len(full)} interventions, "
          f"{args.threads} thread(s), {repeats} repeat(s) interleaved; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after, {os.cpu_count()} cores")
    print(f"{'mode':<18}{'s per call':>12}{'spread %':>10}{'images/s':>10}{'passes/batch':>14}{'speedup':>9}")
    base = statistics.median(times["full passes"])
    for name, seconds in times.items():
        median = statistics.median(seconds)
        spread = 100 * (max(seconds) - min(seconds)) / median
        print(f"{name:<18}{median:>12.2f}{spread:>10.0f}{images / median:>10.0f}{convolutions[name]:>14.1f}"
              f"{base / median:>9.2f}")


if __name__ == "__main__":
    main()
