"""Images/s of the whole input pipeline: JPEG decoding, preprocessing, and SE-ResNet-50 collection.

    python bench/make_jpeg_folder.py /tmp/fake-imagenet --classes 1000 --per-class 30
    python bench/jpeg_pipeline.py /tmp/fake-imagenet --workers 16 --read-workers 4 --limit 10240
    python bench/jpeg_pipeline.py /tmp/fake-imagenet --device cpu --limit 32 --batch 8 --size 64   # smoke test

Rows: decoding alone, by PIL in --workers DataLoader processes (the cpu path) and by nvjpeg in the
main process from bytes read by --read-workers processes (the gpu path; on a CPU device libjpeg
decodes there instead); then each with collection through --model (bf16 and channels_last on
CUDA); last, collection over batches already on the device, the ceiling without an input
pipeline. Each row is the median of --repeats passes over the first --limit images after one
warm-up pass; every file is read once first, so all rows see a warm page cache.
"""

from __future__ import annotations

import argparse
from itertools import cycle, islice
from pathlib import Path

import torch
from collect_overhead import build, calibrate_batchnorm, device_line, print_table, rate, sync, timed

from analysis import collect
from analysis.data import make_loader, open_data
from analysis.data.jpeg import JpegLoader


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("folder", type=Path, help="an ImageNet-style folder (bench/make_jpeg_folder.py writes one)")
    p.add_argument("--model", default="timm:seresnet50")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--limit", type=int, help="first N images (default: all)")
    p.add_argument("--workers", type=int, default=16, help="PIL decoding processes of the cpu path")
    p.add_argument("--read-workers", type=int, default=4, help="file-reading processes of the gpu path")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="torch.compile the hooked model")
    args = p.parse_args()

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    source = open_data(f"imagefolder:{args.folder}", image_size=args.size)
    limit = min(args.limit or len(source.dataset), len(source.dataset))
    for path, _ in source.dataset.folder.samples[:limit]:
        Path(path).read_bytes()
    model, _ = build(args.model, source.num_classes, device, channels_last=cuda)
    options = {"amp": "bf16" if cuda else None, "channels_last": cuda, "compile": args.compile, "progress": False}
    loaders = {
        f"PIL in {args.workers} workers": make_loader(source, args.batch, workers=args.workers, limit=limit),
        f"{'nvjpeg' if cuda else 'libjpeg'}, {args.read_workers} readers":
            JpegLoader(source, args.batch, device, workers=args.read_workers, limit=limit),
    }
    rows = []

    def measure(work: str, decode: str, one_pass, images: int = limit) -> None:
        times = timed(lambda i: one_pass(), 1, args.repeats, device, warmup=1)
        rows.append({"work": work, "decode": decode, **rate(images, times)})

    def drain(loader) -> None:
        for x, _, _ in loader:
            x.to(device, non_blocking=True)
        sync(device)

    batches = [(x.to(device), y, ids) for x, y, ids in islice(loaders[next(iter(loaders))], 16)]
    calibrate_batchnorm(model, batches[0][0])
    for decode, loader in loaders.items():
        measure("decode + preprocess", decode, lambda: drain(loader))
    for decode, loader in loaders.items():
        measure(f"+ collect {args.model}", decode, lambda: collect(model, loader, source.num_classes, **options))
    on_device = list(islice(cycle(batches), -(-limit // args.batch)))
    measure(
        f"collect {args.model}", "none: batches on the device",
        lambda: collect(model, on_device, source.num_classes, **options), sum(len(y) for _, y, _ in on_device),
    )

    print(f"{limit} images of {args.folder}, batch {args.batch}, size {args.size}, {device_line(device)}, "
          f"amp {options['amp']}, compile {args.compile}, {args.repeats} repeats")
    print_table(rows)


if __name__ == "__main__":
    main()
