"""How far AMP moves the gate statistics from float32, on a trained network.

    python bench/amp_gates.py                                   # shipped SE-ResNet-20, CPU bf16, 1000 images
    python bench/amp_gates.py --device cuda --amp bf16 --limit 10000

Collects the same images twice, in float32 and under --amp (the SE blocks re-run in float32 on
their own input, see analysis.capture.collect), and prints per block: eta-squared of both, their
difference, and over channels the median and largest relative change of F and the largest change
of a channel's eta-squared. The reference is the float32 pass, never the AMP pass itself.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from analysis.capture.collect import collect
from analysis.data import make_loader
from analysis.devices import resolve_device
from analysis.measures.tables import channel_table
from analysis.models.spec import open_model_and_data

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist_se20"


def compare(reference: pd.DataFrame, amp: pd.DataFrame) -> pd.DataFrame:
    """Per block: eta2 of both passes and how far the AMP pass moved the channel statistics."""
    both = reference.merge(amp, on=["block", "channel"], suffixes=("_fp32", "_amp"))
    both["f_change"] = (both["F_amp"] / both["F_fp32"] - 1).abs()
    both["eta2_change"] = (both["eta2_amp"] - both["eta2_fp32"]).abs()
    rows = both.groupby("block", sort=False).agg(
        eta2_fp32=("eta2_fp32", "mean"), eta2_amp=("eta2_amp", "mean"),
        f_change_median=("f_change", "median"), f_change_max=("f_change", "max"),
        channel_eta2_change_max=("eta2_change", "max"),
    )
    rows.insert(2, "eta2_change", (rows["eta2_amp"] - rows["eta2_fp32"]).abs())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(SHIPPED))
    parser.add_argument("--data", default="fashion-mnist:test")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="bf16", choices=["bf16", "fp16"])
    args = parser.parse_args()
    model, _, source = open_model_and_data(args.model, args.data)
    model = model.to(resolve_device(args.device))
    tables, seconds = {}, {}
    for mode in (None, args.amp):
        start = time.perf_counter()
        stats = collect(model, make_loader(source, args.batch, limit=args.limit), source.num_classes, amp=mode,
                        inputs=False, progress=False)
        seconds[mode or "fp32"] = time.perf_counter() - start
        tables[mode or "fp32"] = channel_table(stats)
    with pd.option_context("display.width", 200, "display.float_format", lambda v: f"{v:.4g}"):
        print(compare(tables["fp32"], tables[args.amp]).to_string())
    print(f"{args.limit} images of {args.data}, {args.device}; seconds: "
          + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))


if __name__ == "__main__":
    main()
