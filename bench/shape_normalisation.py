"""Which yardstick shape_sep divides by: the evidence behind analysis.measures.profiles.profile_separation.

    se-analysis collect --model checkpoints/fmnist_se20 --data fashion-mnist:test --control-seeds 5 --out runs/ship5
    .venv/bin/python bench/shape_normalisation.py runs/ship5

The same residual (the class curves' differences that a per-class shift and scale of the common curve
m leaves, rms in gate units) divided by three yardsticks: the spread of m across channels (before
issue 23), the pooled within-class SD, and the SD of every gate value of the block (today). Printed:
the planted cases (analysis.testing.notions, known answers) and, for a run with its untrained
controls, per block the residual, the affine share R^2, each normalised value beside the controls'
band, the onset each yardstick gives against every single seed and against the band, and the
trained network's onset on the first 1, 2, 4 and all 8 shards of its data (subsets of ~1/8 .. all).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch

from analysis.capture.collect import collect
from analysis.measures.anova import Anova, anova
from analysis.measures.onset import onset_index
from analysis.measures.permutation import relabelled
from analysis.measures.profiles import gate_sd, profile_split
from analysis.runs.folder import Run, load_run
from analysis.testing.nets import batches
from analysis.testing.notions import (
    CONTROL, TRAINED, FlatProfileNet, Planted, flat_data, notion_cases, planted_block, planted_stats,
)


def spread_of_m(a: Anova) -> float:
    m = a.means[a.counts > 0].mean(0)
    return float(m.std())


def within_sd(a: Anova) -> float:
    return float(np.sqrt((a.ss_within / (a.n - a.classes)).mean()))


YARDSTICKS: dict[str, Callable[[Anova], float]] = {"spread of m": spread_of_m, "within-class SD": within_sd,
                                                   "gate SD": gate_sd}


def layout(stats, name: str, shards: slice = slice(None)) -> Anova:
    count, total, total_sq = (t.numpy()[shards].sum(0) for t in stats.moments(name))
    return anova(count, total, total_sq, stats.shift(name).numpy())


def shapes(a: Anova) -> dict[str, float]:
    """The residual, R^2 and shape under each yardstick of one layout."""
    split = profile_split(a)
    return {"residual": split.residual, "R2": split.affine_r2,
            **{key: split.residual / f(a) if f(a) > 0 else np.nan for key, f in YARDSTICKS.items()}}


def null_q95(stats, name: str) -> dict[str, float]:
    count, total = stats.perm_moments(name)
    shift, a = stats.shift(name).numpy(), layout(stats, name)
    draws = [shapes(relabelled(a, count[p].numpy(), total[p].numpy(), shift)) for p in range(len(count))]
    return {key: float(np.quantile([d[key] for d in draws], 0.95)) for key in YARDSTICKS}


def onset(values: np.ndarray, reference: np.ndarray, names: list[str]) -> str:
    first = int(onset_index(values > reference))
    return names[first] if first < len(names) else "none"


def table(title: str, stats, controls: list, names: list[str]) -> None:
    """Per block the residual, R^2, each yardstick's value with the controls' band, and the onsets."""
    print(f"\n## {title}\n")
    rows = {n: shapes(layout(stats, n)) for n in names}
    nulls = {n: null_q95(stats, n) for n in names}
    bands = [{n: shapes(layout(c, n)) for n in names} for c in controls]
    head = f"{'block':<8} {'residual':>9} {'R2':>5}" + "".join(f" | {k:>15} {'untrained band':>15}" for k in YARDSTICKS)
    print(head)
    for n in names:
        cells = "".join(
            f" | {rows[n][k]:>15.4g} {min(b[n][k] for b in bands):>7.3g}-{max(b[n][k] for b in bands):<7.3g}"
            for k in YARDSTICKS)
        print(f"{n:<8} {rows[n]['residual']:>9.2e} {rows[n]['R2']:>5.2f}{cells}")
    for k in YARDSTICKS:
        value = np.array([rows[n][k] for n in names])
        per_seed = [np.maximum(np.array([b[n][k] for n in names]), [nulls[n][k] for n in names]) for b in bands]
        band = np.max(per_seed, axis=0)
        seeds = [onset(value, ref, names) for ref in per_seed]
        print(f"onset with {k:<15}: {onset(value, band, names):<8} (against each seed: {', '.join(seeds)})")


def subsets(stats, controls: list, names: list[str]) -> None:
    """The onset of each yardstick on the first s shards of the trained data against the band."""
    print(f"\n## onsets on subsets of the trained data (first s of {stats.config.shards} shards), against the band\n")
    for s in (1, 2, 4, stats.config.shards):
        cut = slice(0, s)
        n_images = int(stats.moments(names[0])[0].numpy()[cut].sum())
        found = []
        for k in YARDSTICKS:
            value = np.array([shapes(layout(stats, n, cut))[k] for n in names])
            band = np.max([[shapes(layout(c, n))[k] for n in names] for c in controls], axis=0)
            found.append(f"{k}: {onset(value, band, names)}")
        print(f"{n_images:>6} images: " + "; ".join(found))


def bias(datasets: int = 20) -> None:
    """Each yardstick's estimate against its population value on a block whose common curve is
    flatter (spread 1e-3) than the noise of its estimate (within-class SD 0.05, 150 images a class)."""
    print(f"\n## estimator bias on a flat common curve (spread 1e-3, noise 0.05, 900 images): mean over {datasets} data sets\n")
    block = planted_block("own", np.random.default_rng(0), spread=1e-3, size=0.01)
    block = Planted(block.means, noise=0.05)
    m = block.means.mean(0)
    r = block.means - m
    r = r - r.mean(1, keepdims=True)
    u = m - m.mean()
    r -= np.outer(r @ u / (u @ u), u)
    residual = np.sqrt((r * r).mean())
    truth = {"spread of m": residual / m.std(), "within-class SD": residual / block.noise,
             "gate SD": residual / np.sqrt(block.noise**2 + (block.means - m).var(0).mean() + m.var())}
    estimates = {k: [] for k in YARDSTICKS}
    for seed in range(datasets):
        stats = planted_stats({"B": block}, 900, seed, permutations=0, reservoir=1)
        for k, v in shapes(layout(stats, "B")).items():
            if k in estimates:
                estimates[k].append(v)
    for k in YARDSTICKS:
        print(f"{k:<16} population {truth[k]:.4g}, estimate {np.mean(estimates[k]):.4g} +- {np.std(estimates[k]):.2g}")


def planted(images: int = 2000) -> None:
    trained, controls = notion_cases()
    names = [g.name for g in trained.gates]
    table(f"planted: {', '.join(f'{n} {k}' for n, k in zip(names, TRAINED))}; controls {CONTROL[0]}",
          trained, list(controls.values()), names)
    x, y = flat_data(images)
    net = FlatProfileNet().centre(flat_data(20000, seed=123)[0])
    stats = collect(net, batches(x, y, 500), 10, progress=False, inputs=False, control="untrained", control_seeds=3)
    names = [g.name for g in stats.gates]
    table("planted: flat common curve (issue 23), SE_2_* class-free, SE_3_* class channels; its own untrained seeds",
          stats, list(stats.controls["untrained"].values()), names)


def shipped(run: Run) -> None:
    controls = [c.stats for c in run.controls()]
    names = run.blocks["block"].tolist()
    table(f"{run.meta.model} on {run.meta.stats.samples} images, {len(controls)} untrained seeds",
          run.stats, controls, names)
    subsets(run.stats, controls, names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="a run folder with its untrained controls (the shipped network's)")
    parser.add_argument("--tiny", action="store_true", help="fewer images and data sets (the smoke test)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    planted(500 if args.tiny else 2000)
    bias(3 if args.tiny else 20)
    if args.run:
        shipped(load_run(args.run))


if __name__ == "__main__":
    main()
