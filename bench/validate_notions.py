"""The notions of a run against an independent computation from every gate vector (issue 23).

    se-analysis collect --model checkpoints/fmnist_se20 --data fashion-mnist:test --control-seeds 5 --out runs/ship5
    .venv/bin/python bench/validate_notions.py runs/ship5 [--resamples 200]
    .venv/bin/python bench/validate_notions.py --tiny     # collects a 200-image run first (the smoke test)

Plain forward hooks of this script record every gate vector of the trained network and of each
untrained seed over the run's images (the models rebuilt from the run's meta.json: the checkpoint,
and `untrained(model, seed, data)` per seed). From those vectors alone, with numpy and scipy
(scipy.stats.false_discovery_control for the FDR), it computes per block eta2_mean, class_mod,
shape_sep and affine_r2 and compares them with the run's blocks table and each control's; then an
image bootstrap (resamples of the images with replacement, not of the run's 8 shards) gives each
notion's onset per resample and control seed, whose share for the run's block is compared with the
run's certainty. Tolerances, stated before the first run: point values within 1e-6 relative; band
values (the controls' own tables) within 1e-6 relative; the image bootstrap's share of the run's
onset block within 0.10 of the run's certainty, and the same point onset block.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy import stats as sps

from analysis.cli import main as cli_main
from analysis.data import make_loader
from analysis.models.controls import untrained
from analysis.models.spec import open_model_and_data
from analysis.runs.folder import Run, load_run

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "fmnist_se20"
POINT_TOLERANCE = 1e-6
SHARE_TOLERANCE = 0.10


def gate_vectors(model: torch.nn.Module, run: Run, source, limit: int | None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every gate vector [N, C] float64 by block of `model` over the run's images, and the labels."""
    model.eval()
    paths = {g.name: g.path for g in run.meta.stats.gates}
    seen: dict[str, list[np.ndarray]] = {name: [] for name in paths}
    handles = [model.get_submodule(path).register_forward_hook(
        lambda module, args, out, name=name: seen[name].append(out.detach().flatten(1).double().numpy()))
        for name, path in paths.items()]
    labels = []
    try:
        with torch.no_grad():
            for x, y, *_ in make_loader(source, 500, limit=limit):
                model(x)
                labels.append(y.numpy())
    finally:
        for handle in handles:
            handle.remove()
    return {name: np.concatenate(v) for name, v in seen.items()}, np.concatenate(labels)


def block_statistics(v: np.ndarray, y: np.ndarray, classes: int, q: float = 0.05) -> dict[str, float]:
    """eta2_mean, eta2_null, frac_significant, class_mod, shape_sep, affine_r2 of one block from its
    gate vectors, by their definitions (least squares for the per-class shift and scale)."""
    present = [k for k in range(classes) if (y == k).any()]
    n_k = np.array([(y == k).sum() for k in present], dtype=float)
    mk = np.stack([v[y == k].mean(0) for k in present])
    grand = v.mean(0)
    ss_between = (n_k[:, None] * (mk - grand) ** 2).sum(0)
    ss_total = ((v - grand) ** 2).sum(0)
    n, k = float(len(y)), len(present)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta2 = np.where(ss_total > 0, ss_between / ss_total, 0.0)
        f = (ss_between / (k - 1)) / ((ss_total - ss_between) / (n - k))
    p = np.where(ss_total > 0, sps.f.sf(f, k - 1, n - k), 1.0)
    significant = sps.false_discovery_control(np.nan_to_num(p, nan=1.0)) <= q
    m = mk.mean(0)
    d = (mk - m).T
    design = np.stack([np.ones_like(m), m - m.mean()], axis=1)
    residual = d - design @ np.linalg.lstsq(design, d, rcond=None)[0]
    rms_d, rms_r = math.sqrt((d**2).mean()), math.sqrt((residual**2).mean())
    return {"eta2_mean": float(eta2.mean()), "eta2_null": (k - 1) / (n - 1),
            "frac_significant": float(significant.mean()), "class_mod": float(np.sqrt(ss_between / n).mean()),
            "shape_sep": rms_r / v.std(), "affine_r2": 1 - (rms_r / rms_d) ** 2}


def onset(passes: np.ndarray, names: list[str]) -> str:
    """The first block from which every block passes, or "none"."""
    for i in range(len(names)):
        if passes[i:].all():
            return names[i]
    return "none"


def passes(notion: str, values: dict[str, np.ndarray], blocks, band: np.ndarray | None, rules) -> np.ndarray:
    if notion == "detectable":
        return (values["eta2_mean"] - values["eta2_null"] > rules["min_excess"]) & \
            (values["frac_significant"] >= rules["min_frac_significant"])
    statistic = {"magnitude": "class_mod", "shape": "shape_sep"}[notion]
    margin = rules[f"{notion}_margin"]
    return values[statistic] > np.maximum(blocks[f"{statistic}_perm_q95"].to_numpy(), band) + margin


def compare(label: str, mine: float, theirs: float, tolerance: float) -> bool:
    ok = abs(mine - theirs) <= tolerance * max(abs(theirs), 1e-12)
    print(f"  {label:<34} independent {mine:>12.6g}  run {theirs:>12.6g}  {'ok' if ok else 'DIFFERS'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?")
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--tiny", action="store_true", help="collect a run of 200 images with one seed in a "
                                                            "temporary folder and validate it (the smoke test)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.tiny:
        with tempfile.TemporaryDirectory() as tmp:
            assert cli_main(["collect", "--model", str(CHECKPOINT), "--data", "fashion-mnist:test", "--limit", "200",
                             "--control-seeds", "1", "--out", f"{tmp}/run", "--quiet"]) == 0
            validate(load_run(f"{tmp}/run"), 10)
    else:
        validate(load_run(args.run), args.resamples)


def validate(run: Run, resamples: int) -> None:  # long: one report, read top to bottom
    job = run.meta.job
    model, _, source = open_model_and_data(run.meta.model, "fashion-mnist:test", seed=job.seed if job else 0)
    limit = run.meta.stats.samples
    names = run.blocks["block"].astype(str).tolist()
    classes = run.meta.stats.config.num_classes
    rules = run.document["onset"]["thresholds"]
    blocks = run.blocks.set_index(run.blocks["block"].astype(str))
    ok = True

    gates, y = gate_vectors(model, run, source, limit)
    print(f"{run.path}: {len(y)} images, {len(names)} blocks; point values (tolerance {POINT_TOLERANCE} relative)")
    point = {name: block_statistics(gates[name], y, classes) for name in names}
    for name in names:
        for key in ("eta2_mean", "class_mod", "shape_sep", "affine_r2"):
            ok &= compare(f"{name} {key}", point[name][key], float(blocks.at[name, key]), POINT_TOLERANCE)

    controls = run.controls()
    band = {}
    for control in controls:
        seed = control.document["control"]["seed"]
        fresh = untrained(model, seed, source)
        cgates, cy = gate_vectors(fresh, control, source, control.meta.stats.samples)
        cblocks = control.blocks.set_index(control.blocks["block"].astype(str))
        print(f"untrained seed {seed}: {len(cy)} images")
        band[seed] = {}
        for name in names:
            values = block_statistics(cgates[name], cy, classes)
            band[seed][name] = values
            for key in ("class_mod", "shape_sep"):
                ok &= compare(f"{name} {key}", values[key], float(cblocks.at[name, key]), POINT_TOLERANCE)
    seeds = sorted(band)

    rng = np.random.default_rng(0)
    draws = {name: [] for name in names}
    for _ in range(resamples):
        pick = rng.integers(0, len(y), len(y))
        for name in names:
            draws[name].append(block_statistics(gates[name][pick], y[pick], classes))
    print(f"\nimage bootstrap: {resamples} resamples x {len(seeds)} seeds (detectable: resamples); "
          f"share of the run's onset block within {SHARE_TOLERANCE} of its certainty")
    for notion, record in run.document["onset"]["notions"].items():
        if record["status"] == "undetermined":
            print(f"  {notion}: undetermined in the run ({record['reason']}): nothing to compare")
            continue
        stat_keys = ("eta2_mean", "eta2_null", "frac_significant", "class_mod", "shape_sep")
        values = {k: np.array([point[n][k] for n in names]) for k in stat_keys}
        statistic = {"detectable": None, "magnitude": "class_mod", "shape": "shape_sep"}[notion]
        bands = [np.array([band[s][n][statistic] for n in names]) for s in seeds] if statistic else [None]
        top = np.max(bands, axis=0) if statistic else None
        mine = onset(passes(notion, values, blocks, top, rules), names)
        found = []
        for r in range(resamples):
            resampled = {k: np.array([draws[n][r][k] for n in names]) for k in stat_keys}
            for b in bands:
                found.append(onset(passes(notion, resampled, blocks, b, rules), names))
        share = float(np.mean([f == (record["block"] or "none") for f in found]))
        shares = {b: round(found.count(b) / len(found), 3) for b in dict.fromkeys(found)}
        same = mine == (record["block"] or "none")
        close = record["certainty"] is None or abs(share - record["certainty"]) <= SHARE_TOLERANCE
        ok &= same and close
        print(f"  {notion:<10} run {record['block']} certainty {record['certainty']}; independent point onset {mine}, "
              f"image-bootstrap share {share:.3f} {shares}  {'ok' if same and close else 'DIFFERS'}")
    print("\nall within tolerance" if ok else "\nSOME VALUES DIFFER")


if __name__ == "__main__":
    main()
