"""Write an ImageNet-like image folder of synthetic JPEGs, for bench/jpeg_pipeline.py.

    python bench/make_jpeg_folder.py /tmp/fake-imagenet --classes 1000 --per-class 30 --size 500x375

Each image is colour noise smoothed at several scales (a falling spectrum, as in photographs),
a few flat shapes with sharp edges, and fine grain, saved as a baseline JPEG at --quality: about
80 KiB at 500x375 and quality 90, near ImageNet's files, so decoders do realistic work. A quarter of
the images are portrait (the size transposed). Classes are written in parallel processes, each
from its own seed, so the folder is the same for the same arguments.
"""

from __future__ import annotations

import argparse
import os
import time
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

OCTAVES = ((2, 70), (6, 40), (20, 25), (80, 15), (250, 12))  # (noise cells across, amplitude)
GRAIN = 13  # standard deviation of the per-pixel noise, in uint8 steps


def natural_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    canvas = np.full((height, width, 3), 128.0, np.float32)
    for cells, amplitude in OCTAVES:
        small = rng.integers(0, 256, (max(2, cells * height // width), cells, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC), np.float32)
        canvas += (smooth - 128) * (amplitude / 128)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(3, 8)):
        x, y, r = rng.integers(0, width), rng.integers(0, height), rng.integers(10, max(11, width // 5))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x - r, y - r // 2, x + r, y + r // 2), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    pixels = np.asarray(image, np.float32) + rng.normal(0, GRAIN, (height, width, 3)).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_class(index: int, out: Path, per_class: int, width: int, height: int, quality: int, seed: int) -> int:
    """Write class `index`'s images; returns their total bytes."""
    rng = np.random.default_rng([seed, index])
    folder = out / f"n{index:08d}"
    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i in range(per_class):
        w, h = (height, width) if rng.random() < 0.25 else (width, height)
        path = folder / f"n{index:08d}_{i}.JPEG"
        natural_image(rng, w, h).save(path, quality=quality)
        total += path.stat().st_size
    return total


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--per-class", type=int, default=30)
    p.add_argument("--size", default="500x375", help="WIDTHxHEIGHT")
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--jobs", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))

    start = time.perf_counter()
    write = partial(write_class, out=args.out, per_class=args.per_class, width=width, height=height,
                    quality=args.quality, seed=args.seed)
    with Pool(args.jobs) as pool:
        total = sum(pool.imap_unordered(write, range(args.classes)))
    files = args.classes * args.per_class
    print(f"{files} JPEGs in {args.classes} classes under {args.out}: {total / 2**20:.1f} MiB, "
          f"{total / files / 1024:.1f} KiB each, {time.perf_counter() - start:.1f} s with {args.jobs} processes")


if __name__ == "__main__":
    main()
