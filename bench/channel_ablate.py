"""Cost of per-channel interventions (`se-analysis channels`), with and without batching channels.

    python bench/channel_ablate.py                       # shipped SE-ResNet-20, 500 Fashion-MNIST test images
    python bench/channel_ablate.py --tiny                # seconds: the smoke test

The model is the shipped checkpoint on --images Fashion-MNIST test images (or, with --tiny, a random
SE-ResNet-20 on 48 synthetic 16x16 images), its run collected on the same images first. `channel_ablate` then replaces the --top channels of every block
by their mean, once with `copies=1` (one forward per channel) and once with `copies=M` (the batch
repeated M times, one forward for M channels), interleaved A B A B, one intra-op thread. Prints per
mode: seconds of the median repeat, channel-interventions x images per second, and the ratio to
copies=1. Both modes give the same table (checked).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from analysis import collect, save_run
from analysis.data import make_loader, open_data
from analysis.experiments.channels import channel_ablate
from analysis.models.spec import open_model
from analysis.resources import shipped_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--top", type=int, default=8, help="channels per block")
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="a random SE-ResNet-20 on 48 images of 16x16")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.tiny:
        model = open_model("se_resnet20", random_init=True, num_classes=3, in_channels=1)
        data = open_data("synthetic:classes=3,n=48,size=16,channels=1")
        args.images, args.top, args.repeats = 48, 2, 1
    else:
        model = open_model(str(shipped_checkpoint("fmnist_se20")))
        data = open_data("fashion-mnist:test")
    loader = list(make_loader(data, 250, limit=args.images))
    with tempfile.TemporaryDirectory() as folder:
        run = save_run(collect(model, loader, data.num_classes, progress=False), Path(folder) / "run")
        tables: dict[int, pd.DataFrame] = {}
        times: dict[int, list[float]] = {1: [], args.copies: []}
        for _ in range(args.repeats):
            for copies in times:  # A B A B
                start = time.perf_counter()
                tables[copies] = channel_ablate(model, loader, run, top=args.top, copies=copies, progress=False,
                                                resamples=50)
                times[copies].append(time.perf_counter() - start)
    pd.testing.assert_frame_equal(tables[1], tables[args.copies])
    interventions = len(tables[1].drop_duplicates(["block", "channel"]))
    base = statistics.median(times[1])
    print(f"{interventions} channel interventions x {args.images} images, {torch.get_num_threads()} thread "
          "(the machine may be shared: compare the ratio)")
    print(f"{'copies':>6} {'seconds':>8} {'interv.x img/s':>15} {'ratio':>6}")
    for copies, spent in times.items():
        seconds = statistics.median(spent)
        print(f"{copies:>6} {seconds:>8.2f} {interventions * args.images / seconds:>15.0f} {base / seconds:>6.2f}")


if __name__ == "__main__":
    main()
