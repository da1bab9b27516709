"""The measures on realistic data: the shipped SE-ResNet-20 (checkpoints/fmnist_se20) over 2000
Fashion-MNIST test images, against independent computations from every gate vector.

One collect pass serves every test (the module fixture). Plain forward hooks of this file record
every gate vector in that same pass, beside the library's hooks, with each sample's label and id;
the references below are computed from those vectors alone, from the measures' definitions.
Each tolerance was stated before the first run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from analysis.capture.keys import pseudo_labels
from analysis.capture.stats import GateStats
from analysis.measures import tables
from analysis.measures.probe import Probe, probe, stratified_folds
from analysis.testing.brute import shape_separation
from analysis.testing.fakes import sklearn_fold_correct

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "fmnist_se20"
IMAGES = 2000

pytestmark = pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="needs dataset-fashion-mnist")


@dataclass(frozen=True)
class Shipped:
    stats: GateStats
    gates: dict[str, np.ndarray]  # gate name -> every gate vector [N, C] float64, in loader order
    labels: np.ndarray  # [N]
    ids: np.ndarray  # [N] sample ids


@pytest.fixture(scope="module")
def shipped() -> Shipped:
    """GateStats of the shipped checkpoint over IMAGES test images, and every gate vector of that pass."""
    from analysis.capture.collect import collect
    from analysis.capture.gates import find_gates
    from analysis.data import make_loader
    from analysis.models.spec import open_model_and_data

    model, _, source = open_model_and_data(str(CHECKPOINT), "fashion-mnist:test")
    gates = find_gates(model)
    seen: dict[str, list[torch.Tensor]] = {g.name: [] for g in gates}
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def recorded(loader: Iterable) -> Iterator:
        for x, y, ids in loader:
            batches.append((y, ids))
            yield x, y, ids

    handles = [model.get_submodule(g.path).register_forward_hook(
        lambda module, args, out, name=g.name: seen[name].append(out.flatten(1).double())) for g in gates]
    try:
        loader = recorded(make_loader(source, 500, limit=IMAGES))
        stats = collect(model, loader, source.num_classes, gates=gates, progress=False)
    finally:
        for handle in handles:
            handle.remove()
    labels, ids = (torch.cat(column).numpy() for column in zip(*batches))
    return Shipped(stats, {name: torch.cat(v).numpy() for name, v in seen.items()}, labels, ids)


Tables = tuple[pd.DataFrame, pd.DataFrame]  # (channel table, block table indexed by block)


@pytest.fixture(scope="module")
def shipped_table(shipped: Shipped) -> Tables:
    """The channel and block tables of the shipped statistics, built by `measures.tables`. The
    logistic probes are stubbed out: on every block they take minutes on two cores, and
    test_probe_matches_scikit_learn_on_the_same_folds checks them."""
    nan = Probe(math.nan, math.nan, math.nan, math.nan)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tables, "probe", lambda *args, **kwargs: nan)
        channels = tables.channel_table(shipped.stats)
        return channels, tables.block_table(shipped.stats, channels=channels).set_index("block")


def test_the_statistics_hold_the_gate_vectors_the_hooks_of_this_file_saw(shipped: Shipped) -> None:
    """The references below read the same values as GateStats: its reservoir (every sample: 200
    per class, fewer than StatsConfig.reservoir) equals the recorded vectors, bit for bit."""
    assert shipped.stats.samples == len(shipped.labels) == IMAGES
    order = np.argsort(shipped.ids)
    for name, x in shipped.gates.items():
        values, labels, ids = shipped.stats.reservoir(name)
        by_id = np.argsort(ids.numpy())
        np.testing.assert_array_equal(ids.numpy()[by_id], shipped.ids[order])
        np.testing.assert_array_equal(labels.numpy()[by_id], shipped.labels[order])
        np.testing.assert_array_equal(values.numpy()[by_id], x[order].astype(np.float32))


def test_probe_matches_scikit_learn_on_the_same_folds(shipped: Shipped) -> None:
    """Our probe against scikit-learn's LogisticRegression on the same folds of the reservoir's
    vectors (every one of the 2000); tolerance, stated before the run: 1% of the test predictions
    (near-ties between two optima that agree to the solvers' tolerance)."""
    for block in ("SE_3_2", "SE_4_2"):
        values, labels, _ = shipped.stats.reservoir(block)
        x, y = values.numpy(), labels.numpy()
        ours = probe(x, y, folds=5, seed=0)
        correct = sklearn_fold_correct(x, y, stratified_folds(y, 5, 0))
        assert ours.accuracy == pytest.approx(correct / IMAGES, abs=0.01), block


def test_a_class_of_one_vector_is_left_out_of_the_probe_on_shipped_gates(shipped: Shipped) -> None:
    """Class 9 cut to one vector: the probe is scikit-learn's on the other nine classes' vectors (that
    class could only be tested, never trained on); tolerance, stated before the run: 1% as above."""
    values, labels, _ = shipped.stats.reservoir("SE_4_2")
    x, y = values.numpy(), labels.numpy()
    keep = (y != 9) | (np.arange(y.size) == np.flatnonzero(y == 9)[0])
    ours = probe(x[keep], y[keep], folds=5, seed=0)
    rest = y[keep] != 9
    correct = sklearn_fold_correct(x[keep][rest], y[keep][rest], stratified_folds(y[keep][rest], 5, 0))
    assert ours.accuracy == pytest.approx(correct / rest.sum(), abs=0.01)
    assert ours.chance == pytest.approx(np.bincount(y[keep][rest]).max() / rest.sum())


def entropy_mm(codes: np.ndarray) -> float:
    """Plug-in entropy of discrete codes [N] in nats, with the Miller-Madow term (m - 1) / 2N."""
    counts = np.unique(codes, return_counts=True)[1]
    p = counts / codes.size
    return float(-(p * np.log(p)).sum() + (counts.size - 1) / (2 * codes.size))


def plug_in_bits(cell: np.ndarray, y: np.ndarray) -> float:
    """MI in bits between discrete cells [N] and the class y [N]: H(cell) + H(y) - H(cell, y), Miller-Madow."""
    return (entropy_mm(cell) + entropy_mm(y) - entropy_mm(cell * (y.max() + 1) + y)) / math.log(2)


def test_mutual_information_is_the_plug_in_of_every_gate_vector_over_the_statistics_bins(
    shipped: Shipped, shipped_table: Tables
) -> None:
    """What our MI estimates, checked on real gates: the histogram GateStats kept equals every gate
    vector counted over its edges (cell = edges at or below the value: 0 underflow, B + 1
    overflow), and the channel table's mi_bits is the Miller-Madow plug-in MI of those cells.
    Tolerance, stated before the run: counts exact, MI 1e-9 relative."""
    channels, _ = shipped_table
    k = shipped.stats.config.num_classes
    for name, x in shipped.gates.items():
        counts, edges = (t.numpy() for t in shipped.stats.histogram(name))
        cells = np.stack([np.searchsorted(edges[c], x[:, c], side="right") for c in range(x.shape[1])], axis=1)
        for c in range(x.shape[1]):
            brute = np.bincount(shipped.labels * counts.shape[2] + cells[:, c], minlength=k * counts.shape[2])
            np.testing.assert_array_equal(counts[:, c], brute.reshape(k, -1))
        mi = [plug_in_bits(cells[:, c], shipped.labels) for c in range(x.shape[1])]
        ours = channels.loc[channels["block"] == name, "mi_bits"].to_numpy()
        np.testing.assert_allclose(ours, mi, rtol=1e-9, atol=1e-12, err_msg=name)


def knn_bits(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """MI per column of x [N, C] with the class y, in bits: scikit-learn's kNN estimate (Ross 2014)."""
    from sklearn.feature_selection import mutual_info_classif

    return mutual_info_classif(x, y, n_neighbors=3, random_state=0) / math.log(2)


def binned_bits(x: np.ndarray, y: np.ndarray, bins: int = 20) -> np.ndarray:
    """MI per column of x [N, C] with the class y, in bits: each column cut at its own quantiles into
    `bins` equal-count bins, H(bin) + H(y) - H(bin, y) from the plug-in entropies, each with the
    Miller-Madow term (without it the plug-in's first-order bias, (K-1)(B-1) / (2N ln 2) = 0.06 bits
    here, would alone use up the tolerance below)."""
    cuts = (np.quantile(column, np.linspace(0, 1, bins + 1)[1:-1]) for column in x.T)
    return np.array([plug_in_bits(np.searchsorted(cut, column, side="right"), y) for cut, column in zip(cuts, x.T)])


# Measured on the first run, each against the tolerance of the docstring (stated before it), with
# equal-width bins over each channel's first-batch range (issue 14 part 1):
# * SE_2_2: its 16 channels carry the same information (MI spread across them 0.001 bits; the two
#   references rank them with Spearman 0.02 between themselves): ours against kNN -0.26, against
#   quantile bins -0.60. The rank criterion is ill-posed here, whatever the estimator.
# * SE_2_3: ours against kNN 0.74, the references between themselves 0.69 (kNN's scatter).
# * SE_4_2: ours was the outlier. Spearman 0.78 (kNN) and 0.76 (quantile bins) while the references
#   agree at 0.98; block mean 0.897 against kNN's 1.005 (allowed 0.100). Equal-width bins over a
#   skewed channel's range left its bulk in one bin (channel 3: 1066 of 2000 samples; 0.71 bits
#   against 1.07 by kNN and 1.06 by quantile bins).
# Since then GateStats' 18 bins are equiprobable on the first batch (analysis/capture/ranges.py), and
# the ranking is required only where the two references rank the channels alike themselves
# (Spearman above 0.9 between them), a rule fixed before the first run with those bins. Measured
# then: block means 0.008-0.046 bits below kNN and from 0.018 below to 0.001 above quantile bins;
# Spearman of ours 0.938-0.991 against kNN and 0.974-0.997 against quantile bins in the seven blocks
# ranked, SE_4_2 0.981 and 0.991 (its channel 3: 1.03 bits, its largest bin 146 samples); SE_2_2 and
# SE_2_3 not ranked (the references at 0.02 and 0.69 between themselves).
RANKED_ALIKE = 0.9  # Spearman between the two references above which a block's channels have a ranking


def test_mutual_information_agrees_with_knn_and_with_quantile_bins_on_every_block(
    shipped: Shipped, shipped_table: Tables
) -> None:
    """Our MI (18 bins per channel, equiprobable on the first batch, plus under/overflow,
    Miller-Madow) against two independent estimates from every gate vector: scikit-learn's kNN
    estimator and 20 quantile bins (Miller-Madow). Tolerance, stated before the run: per block the
    mean over channels within 0.05 bits or 10% of each reference, whichever is larger (binning loses
    a few % of a continuous variable's MI, the kNN estimate scatters by ~0.01-0.02 bits at N = 2000),
    and the channels ranked alike: Spearman correlation over the block's channels above 0.9 against
    each reference, in every block where the references rank the channels alike themselves
    (Spearman between them above 0.9). Where they do not, the data define no ranking (SE_2_2's
    channels carry the same information within 0.001 bits): those blocks are printed and not ranked."""
    channels, blocks = shipped_table
    unranked = {}
    for name, x in shipped.gates.items():
        ours = channels.loc[channels["block"] == name, "mi_bits"].to_numpy()
        knn, binned = knn_bits(x, shipped.labels), binned_bits(x, shipped.labels)
        for reference in (knn, binned):
            assert abs(blocks.loc[name, "mi_bits_mean"] - reference.mean()) <= max(0.05, 0.1 * reference.mean()), name
        alike = sps.spearmanr(knn, binned).statistic
        if alike <= RANKED_ALIKE:
            unranked[name] = alike
            continue
        for reference in (knn, binned):
            assert sps.spearmanr(ours, reference).statistic > 0.9, name
    print("not ranked, the references' Spearman between themselves at most 0.9:",
          ", ".join(f"{name} ({alike:.2f})" for name, alike in unranked.items()))
    assert len(unranked) < len(shipped.gates) / 2  # the ranking is checked on most blocks


def test_profile_and_shape_separation_match_a_least_squares_fit_of_every_gate_vector(
    shipped: Shipped, shipped_table: Tables
) -> None:
    """The block table's profile_sep, shape_sep and affine_r2 against `brute.shape_separation` of every
    gate vector (a least-squares fit); tolerance, stated before the run: 1e-6 relative (all are
    exact; the moments are float64 sums)."""
    _, blocks = shipped_table
    for name, x in shipped.gates.items():
        profile_sep, shape_sep = shape_separation(x, shipped.labels)
        assert blocks.loc[name, "profile_sep"] == pytest.approx(profile_sep, rel=1e-6), name
        assert blocks.loc[name, "shape_sep"] == pytest.approx(shape_sep, rel=1e-6), name
        assert blocks.loc[name, "affine_r2"] == pytest.approx(1 - (shape_sep / profile_sep) ** 2, rel=1e-6), name


def eta_squared(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Between-class over total sum of squares per column of x [N, C], two-pass in float64."""
    grand = x.mean(0)
    between = sum((y == k).sum() * (x[y == k].mean(0) - grand) ** 2 for k in np.unique(y))
    return between / ((x - grand) ** 2).sum(0)


def test_permutation_null_matches_relabelling_every_gate_vector(shipped: Shipped, shipped_table: Tables) -> None:
    """The block table's eta2_perm, class_mod_perm_q95 and shape_sep_perm_q95 against brute force: every gate vector relabelled with each of
    the P pseudo-labellings of its sample id (`keys.pseudo_labels`), eta2 per channel, the block
    mean averaged over the P; eta2_mean likewise with the true labels. Tolerance, stated before the
    run: 1e-6 relative (both are exact)."""
    _, blocks = shipped_table
    config = shipped.stats.config
    ids = torch.from_numpy(shipped.ids)
    relabelled = [pseudo_labels(ids, p, config.num_classes, config.seed).numpy() for p in range(config.permutations)]
    assert config.permutations > 1 and not any((y == shipped.labels).all() for y in relabelled)
    for name, x in shipped.gates.items():
        null = np.mean([eta_squared(x, y).mean() for y in relabelled])
        assert blocks.loc[name, "eta2_perm"] == pytest.approx(null, rel=1e-6), name
        # the notions' nulls, the 95th percentiles over the relabellings (float32 sums: 1e-4 relative,
        # stated before the run)
        mods = [np.sqrt(eta_squared(x, y) * ((x - x.mean(0)) ** 2).mean(0)).mean() for y in relabelled]
        shapes = [shape_separation(x, y)[1] for y in relabelled]
        assert blocks.loc[name, "class_mod_perm_q95"] == pytest.approx(np.quantile(mods, 0.95), rel=1e-4), name
        assert blocks.loc[name, "shape_sep_perm_q95"] == pytest.approx(np.quantile(shapes, 0.95), rel=1e-4), name
        assert blocks.loc[name, "eta2_mean"] == pytest.approx(eta_squared(x, shipped.labels).mean(), rel=1e-6), name


def test_cka_between_blocks_is_the_gram_space_cka_of_every_gate_vector(shipped: Shipped) -> None:
    """`similarity` (from the reservoir, matched by sample id) against Kornblith et al.'s definition,
    HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with HSIC = tr(K H L H), on the hooked gate vectors of the
    same images. Tolerance, stated before the run: 1e-6 relative (the reservoir holds the float32 gates
    the hooks saw; both sides are float64 from there)."""
    from analysis.measures.similarity import similarity

    table = similarity(shipped.stats, shipped.stats).set_index(["block_a", "block_b"])
    kept = np.sort(shipped.stats.reservoir(next(iter(shipped.gates)))[2].numpy())
    rows = np.searchsorted(shipped.ids, kept, sorter=np.argsort(shipped.ids))
    rows = np.argsort(shipped.ids)[rows]
    assert (shipped.ids[rows] == kept).all() and len(kept) == IMAGES  # 200 per class: the reservoir keeps them all

    def centred_gram(a: np.ndarray) -> np.ndarray:  # H K H for the linear kernel K = a a^T
        k = a @ a.T
        return k - k.mean(0) - k.mean(1)[:, None] + k.mean()

    for a, b in [("SE_2_1", "SE_4_3"), ("SE_3_3", "SE_4_1"), ("SE_4_2", "SE_2_2"), ("SE_4_3", "SE_4_3")]:
        k, l = centred_gram(shipped.gates[a][rows]), centred_gram(shipped.gates[b][rows])
        expected = float((k * l).sum()) / math.sqrt(float((k * k).sum()) * float((l * l).sum()))  # tr(KHLH) / ...
        assert table.loc[(a, b), "samples"] == len(kept)
        assert table.loc[(a, b), "cka"] == pytest.approx(expected, rel=1e-6), (a, b)
