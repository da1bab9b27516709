"""Linear CKA: how alike two sets of gate vectors of the same images are (two runs, or a block's
squeezed input z and its gate s).

    table = similarity(stats_a, stats_b)        # one row per (block of a, block of b)
    table = squeeze_similarity(stats)           # one row per block: z against s
    se-analysis similarity RUN OTHER [--pairs same]; se-analysis similarity RUN (z against s)

Columns: `block_a`, `block_b` (the blocks compared; `block` for z against s), `samples` (the images
both sides kept, matched by sample id), `cka`, `cka_debiased` (below).
    linear_cka(x, y)                            # x [n, p], y [n, q]: the rows are the same images

Linear CKA (Kornblith et al. 2019) compares the images' similarity structure on both sides: 1 when
one side is an orthogonal transform of the other up to an isotropic scale (and a shift), 0 when
their centred features are uncorrelated; it does not depend on how channels are ordered, so two runs
of a network (epochs, seeds, trained and untrained) compare block by block.

From the reservoirs, not from a streaming estimator. CKA needs the same images on both sides. Each
run's reservoir keeps a uniform sample of R images per class chosen by a hash of the sample id and
the statistics' seed (analysis.capture.reservoir), so two runs over the same data with the same seed
and reservoir size keep the same images whatever the model; they are matched here by sample id, and
only ids kept in both count. A streaming estimator (X^T X, Y^T Y and X^T Y summed over every image)
would be exact over all the data but needs both networks in one joint pass; the reservoirs make any
two stored runs comparable afterwards at no collection cost. The price: R images per class (2,560 on
Fashion-MNIST), class-balanced rather than the data's mix, and a finite-sample bias of the plain
estimator of about features / images upwards, which `cka_debiased` (the unbiased HSIC of Song et al.
2012 in each place of the plain one, as in Kornblith et al.'s code) removes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from analysis.capture.stats import GateStats
from analysis.errors import OptionError, RunMismatchError
from analysis.measures._arrays import Array, as_numpy

PAIRS = ("all", "same")  # which blocks of two runs `similarity` compares
MIN_SAMPLES = 4  # the debiased estimator divides by (n - 1)(n - 2) and n - 3; fewer shared images: NaN


def _hsic_terms(x: np.ndarray, y: np.ndarray, debiased: bool) -> float:
    """<K_x, K_y> for the linear kernels of the centred x [n, p], y [n, q] (the plain HSIC up to
    (n - 1)^2), or the unbiased estimator of Song et al. 2012 times n(n - 3), in feature space."""
    cross = float(np.linalg.norm(x.T @ y) ** 2)
    if not debiased:
        return cross
    n = x.shape[0]
    rows_x, rows_y = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)  # the Gram diagonals
    return cross - n / (n - 2) * float(rows_x @ rows_y) + float(rows_x.sum() * rows_y.sum()) / ((n - 1) * (n - 2))


def linear_cka(x: Array, y: Array, *, debiased: bool = False) -> float:
    """Linear CKA between x [n, p] and y [n, q], whose rows are the same n images, in float64.

    NaN with fewer than MIN_SAMPLES images, or when one side is constant over the images (no
    similarity structure to compare), or (debiased) when an unbiased self-similarity is not
    positive (too few images for the features)."""
    a = as_numpy(x).astype(np.float64)
    b = as_numpy(y).astype(np.float64)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x and y must hold the same images: {a.shape[0]} rows against {b.shape[0]}.")
    if a.shape[0] < MIN_SAMPLES:
        return math.nan
    a, b = a - a.mean(0), b - b.mean(0)
    xx, yy = _hsic_terms(a, a, debiased), _hsic_terms(b, b, debiased)
    if xx <= 0 or yy <= 0:
        return math.nan
    return _hsic_terms(a, b, debiased) / math.sqrt(xx * yy)


def shared_rows(ids_a: Array, ids_b: Array) -> tuple[np.ndarray, np.ndarray]:
    """(rows of a, rows of b) holding the sample ids found in both, in increasing id order."""
    _, rows_a, rows_b = np.intersect1d(as_numpy(ids_a), as_numpy(ids_b), assume_unique=True, return_indices=True)
    return rows_a, rows_b


def _vectors(stats: GateStats, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    values, _, ids = stats.reservoir(name)
    return values, ids


def _row(x: torch.Tensor, y: torch.Tensor) -> dict[str, float | int]:
    return {"samples": len(x), "cka": linear_cka(x, y), "cka_debiased": linear_cka(x, y, debiased=True)}


def similarity(a: GateStats, b: GateStats, *, pairs: str = "all") -> pd.DataFrame:
    """Table `similarity`: linear CKA between the reservoir gate vectors of the blocks of `a` and of
    `b` on the images both kept (matched by sample id); `pairs` "all" (every block of a against every
    block of b, the heatmap) or "same" (each block against the block of the same name in b).

    Raises RunMismatchError when the two share no image (other data, seed or reservoir size), or,
    with "same", no block name."""
    if pairs not in PAIRS:
        raise OptionError(f"pairs must be one of {', '.join(PAIRS)}, not {pairs!r}.")
    names_b = [g.name for g in b.gates]
    if pairs == "same" and not set(names_b) & {g.name for g in a.gates}:
        raise RunMismatchError("the two runs have no SE block of the same name to compare.")
    first_a, first_b = _vectors(a, a.gates[0].name), _vectors(b, b.gates[0].name)
    rows_a, rows_b = shared_rows(first_a[1], first_b[1])  # one reservoir per statistics: the same ids in every block
    if len(rows_a) == 0:
        raise RunMismatchError(
            "the two runs kept no image in common (their reservoirs hold other sample ids: other data, --seed or "
            "--reservoir); CKA needs the same images in both."
        )
    vectors_b = {name: _vectors(b, name)[0][rows_b] for name in names_b}
    rows = []
    for gate in a.gates:
        x = _vectors(a, gate.name)[0][rows_a]
        for other in [gate.name] if pairs == "same" else names_b:
            if other in vectors_b:
                rows.append({"block_a": gate.name, "block_b": other, **_row(x, vectors_b[other])})
    return pd.DataFrame(rows, columns=["block_a", "block_b", "samples", "cka", "cka_debiased"])


def squeeze_similarity(stats: GateStats) -> pd.DataFrame:
    """Table `squeeze_similarity`: per block, linear CKA between the squeezed input z and the gate s
    of the same images (the reservoirs of `stats.inputs` and `stats`, matched by sample id): how much
    of the images' similarity structure entering the excitation leaves it. Empty without inputs."""
    inputs = stats.inputs
    rows = []
    for gate in stats.gates if inputs is not None else []:
        s, ids_s = _vectors(stats, gate.name)
        z, ids_z = _vectors(inputs, gate.name)
        rows_s, rows_z = shared_rows(ids_s, ids_z)
        rows.append({"block": gate.name, **_row(z[rows_z], s[rows_s])})
    return pd.DataFrame(rows, columns=["block", "samples", "cka", "cka_debiased"])
