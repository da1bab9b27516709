"""The "Role of Squeeze" table of MODEL_CARD.md, from the checkpoints that role_of_squeeze.sh trains.

    .venv/bin/python scripts/role_of_squeeze.py /work/sq

Reads every `<variant>_seed<N>/final.json` under the folder (never the weights' accuracy from
memory: each number is the one the training run recorded on the full test set; weights are not
needed, so seeds shipped as metadata only count too), counts parameters
and forward FLOPs of one 28x28 image with torch.utils.flop_counter, and prints a markdown table:
test top-1 mean, sample standard deviation, min and max over seeds, per variant.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from analysis.models.checkpoint import parameter_count
from analysis.models.architectures import build_model

GATE = {"se": "SE (squeeze: global average pool)", "nosqueeze": "NoSqueeze (1x1 convs, no pooling)",
        "none": "none (plain ResNet-20)"}


def forward_flops(model: torch.nn.Module, shape: tuple[int, ...]) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {}
    for meta_file in sorted(args.folder.glob("*_seed*/final.json")):
        meta = json.loads(meta_file.read_text())
        runs.setdefault(meta["arch_args"]["se"], []).append(meta | {"folder": meta_file.parent})
    print("| gate | seeds | test top-1: mean +- std (min - max) | per seed | parameters | FLOPs / image | train time / run |")
    print("|---|---|---|---|---|---|---|")
    for variant in ("se", "nosqueeze", "none"):
        metas = runs.get(variant, [])
        if not metas:
            continue
        model = build_model(metas[0]["arch"], **metas[0]["arch_args"])  # the metadata suffices: no weights needed
        acc = [100 * m["test_accuracy"] for m in metas]
        spread = statistics.stdev(acc) if len(acc) > 1 else float("nan")
        seeds = ", ".join(f"{m['train_config']['seed']}: {a:.2f}" for m, a in zip(metas, acc))
        minutes = statistics.mean(m["train_seconds"] for m in metas) / 60
        flops = forward_flops(model, (metas[0]["arch_args"]["in_channels"], 28, 28))
        print(f"| {GATE[variant]} | {len(metas)} | {statistics.mean(acc):.2f}% +- {spread:.2f} ({min(acc):.2f} - {max(acc):.2f}) "
              f"| {seeds} | {parameter_count(model):,} | {flops / 1e6:.1f} M | {minutes:.0f} min |")


if __name__ == "__main__":
    main()
