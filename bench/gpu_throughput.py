"""Collection against plain inference on a GPU, for several SE models, eager and torch.compile.

    python bench/gpu_throughput.py     # on CUDA: 3 models x eager, compile; batch 256, bf16, channels_last
    python bench/gpu_throughput.py --models timm:seresnet50 --compile-modes compile   # one model per call

Random weights, inputs already on the device (the input pipeline is bench/jpeg_pipeline.py's).
Rows per model and mode: plain inference, collect (GateHooks + GateStats), naive hooks copying
gates to host lists, captum's LayerActivation on the gate modules (compiled: only --compiled's
modes, since each compiles afresh with its hooks in place, a minute or more for SE-ResNet-50);
columns images/s (median of --repeats passes of --batches batches after two warm-up passes, which
also compile), the spread of the passes, the ratio to plain, and peak GPU memory (GateStats for --classes 1000 included). Without CUDA it runs a tiny CPU version
(small batch and images, eager) so that the script can be smoke-tested anywhere.
"""

from __future__ import annotations

import argparse

import torch
from collect_overhead import MODES, build, calibrate_batchnorm, device_line, measure_modes, print_table

from analysis.models.precision import AMP_DTYPES

MODELS = "timm:seresnet50,torchvision:efficientnet_b0,torchvision:regnet_y_800mf"
GPU_DEFAULTS = {"device": "cuda", "batch": 256, "size": 224, "amp": "bf16", "compile_modes": "eager,compile"}
CPU_DEFAULTS = {"device": "cpu", "batch": 4, "size": 64, "amp": "none", "compile_modes": "eager",
                "batches": 2, "repeats": 3}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default=MODELS, help="comma-separated model specs")
    p.add_argument("--device")
    p.add_argument("--batch", type=int)
    p.add_argument("--size", type=int)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--amp", choices=("none", *AMP_DTYPES))
    p.add_argument("--no-channels-last", action="store_true")
    p.add_argument("--compile-modes", help="comma-separated: eager, compile")
    p.add_argument("--compiled", default="plain,collect",
                   help="modes measured compiled (each compiles afresh): plain, collect, naive, captum")
    cuda = torch.cuda.is_available()
    p.set_defaults(**(GPU_DEFAULTS if cuda else CPU_DEFAULTS))
    args = p.parse_args()
    if not cuda:
        print("no CUDA device: running the tiny CPU version (a smoke test, not a measurement)")

    device = torch.device(args.device)
    channels_last = not args.no_channels_last
    rows = []
    for spec in args.models.split(","):
        model, channels = build(spec, args.classes, device, channels_last)
        x = torch.randn(args.batch, channels, args.size, args.size, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        calibrate_batchnorm(model, x)
        for mode in args.compile_modes.split(","):
            found = measure_modes(
                model, x, args.classes, amp=args.amp, compile=mode == "compile",
                batches=args.batches, repeats=args.repeats,
                modes=tuple(args.compiled.split(",")) if mode == "compile" else MODES,
            )
            rows += [{"model": spec, "run": mode, **row} for row in found]
        del model, x
        if cuda:
            torch.cuda.empty_cache()
    print(f"batch {args.batch}, size {args.size}, {device_line(device)}, amp {args.amp}, "
          f"channels_last {channels_last}, {args.batches} batches x {args.repeats} repeats")
    print_table(rows)


if __name__ == "__main__":
    main()
