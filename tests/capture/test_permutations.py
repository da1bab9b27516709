"""Permutation tables and squeeze inputs against brute force from independently recorded values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis.capture.collect import collect
from analysis.capture.keys import pseudo_labels
from analysis.capture.stats import StatsConfig
from analysis.measures.tables import block_table
from analysis.testing.brute import shape_separation
from analysis.testing.nets import batches, record_gates


def test_permutation_tables_equal_brute_force_relabelling(planted):
    """Counts exactly; float32 sums of ~120 values below 1 to float32 accumulation (at most 120 additions
    rounding by 2**-24 of a partial sum below 10: 1e-4)."""
    model, x, y = planted
    stats = collect(model, batches(x, y, 100), 10, config=StatsConfig(10, permutations=3, seed=5), progress=False)
    truth = record_gates(model, [g.path for g in stats.gates], x)
    ids = torch.arange(len(y))
    for gate in stats.gates:
        count, total = stats.perm_moments(gate.name)
        assert total.dtype == torch.float32
        g = truth[gate.path] - stats.shift(gate.name)
        for p in range(3):
            z = pseudo_labels(ids, p, 10, 5)
            assert torch.equal(count[p], torch.bincount(z, minlength=10))
            for c in range(10):
                torch.testing.assert_close(total[p, c].double(), g[z == c].sum(0), rtol=0, atol=1e-4)


def brute_eta2(v: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Between-class over total sum of squares per column of v [N, C], two-pass in float64."""
    grand = v.mean(0)
    between = sum((labels == k).sum() * (v[labels == k].mean(0) - grand) ** 2 for k in np.unique(labels))
    return between / ((v - grand) ** 2).sum(0)


def test_permutation_p_value_equals_brute_force_relabelling_of_recorded_gates(planted):
    """perm_p, eta2_perm and shape_sep_perm(_max) of the block table against the same computed from
    every recorded gate vector, relabelled by each of 99 pseudo-labellings of its sample id. The
    class-free blocks (SE_2_x) give p-values above the floor, the class blocks (SE_3_x) the floor
    1/100. Tolerances, stated before the run: perm_p exactly (no null value lies within 1e-6 of the
    observed), the nulls 1e-5 relative (float32 sums, float64 brute force)."""
    model, x, y = planted
    stats = collect(model, batches(x, y, 100), 10, progress=False)
    assert stats.config.permutations == 99
    blocks = block_table(stats, probe_max_classes=2, probe_folds=2).set_index("block")
    truth = record_gates(model, [g.path for g in stats.gates], x)
    labels = y.numpy()
    relabelled = [pseudo_labels(torch.arange(len(y)), p, 10, 0).numpy() for p in range(99)]
    p_values = {}
    for gate in stats.gates:
        v = truth[gate.path].numpy()
        observed = brute_eta2(v, labels).mean()
        null = np.array([brute_eta2(v, z).mean() for z in relabelled])
        assert np.abs(null - observed).min() > 1e-6 * observed
        p_values[gate.name] = (1 + (null >= observed).sum()) / 100
        assert blocks.loc[gate.name, "perm_p"] == p_values[gate.name], gate.name
        assert blocks.loc[gate.name, "eta2_perm"] == pytest.approx(null.mean(), rel=1e-5)
        shapes = [shape_separation(v.astype(np.float64), z)[1] for z in relabelled]
        assert blocks.loc[gate.name, "shape_sep_perm"] == pytest.approx(np.mean(shapes), rel=1e-5)
        assert blocks.loc[gate.name, "shape_sep_perm_max"] == pytest.approx(np.max(shapes), rel=1e-5)
    assert all(p_values[f"SE_3_{i}"] == 0.01 for i in (1, 2, 3))
    assert sum(p_values[f"SE_2_{i}"] > 0.05 for i in (1, 2, 3)) >= 2  # class-free: not at the floor


def test_pseudo_labels_are_uniform_and_independent_of_the_labels_and_each_other():
    ids = torch.arange(100_000)
    a, b = pseudo_labels(ids, 0, 10, 0), pseudo_labels(ids, 1, 10, 0)
    expected = len(ids) / 100
    joint = torch.bincount(a * 10 + b, minlength=100).double()
    chi2 = float(((joint - expected) ** 2 / expected).sum())
    assert chi2 < 150  # 99 degrees of freedom: P(chi2 > 150) < 1e-3
    assert not torch.equal(pseudo_labels(ids, 0, 10, 1), a)


def test_squeeze_inputs_equal_brute_force_channel_means(planted):
    model, x, y = planted
    stats = collect(model, batches(x, y, 100), 10, progress=False)
    assert stats.inputs is not None and not stats.inputs.config.bounded
    modules = dict(model.named_modules())
    seen = {g.name: [] for g in stats.gates}
    handles = [modules[g.path.rpartition(".")[0]].register_forward_pre_hook(
        lambda m, i, n=g.name: seen[n].append(i[0].double().mean((2, 3)))) for g in stats.gates]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    assert set(stats.inputs.layout.fields) == {"shift", "count", "sum", "sumsq", "nonfinite", "below", "above",
                                               "min", "max", "reservoir"}  # what the tables read of z, and checks
    for gate in stats.gates:
        z = torch.cat(seen[gate.name])
        count, total, total_sq = (m.sum(0) for m in stats.inputs.moments(gate.name))
        assert torch.equal(count, torch.bincount(y, minlength=10))
        mean = stats.inputs.shift(gate.name) + total / count[:, None]
        expected = torch.stack([z[y == c].mean(0) for c in range(10)])
        torch.testing.assert_close(mean, expected, rtol=1e-6, atol=1e-7)
        values, labels, ids = stats.inputs.reservoir(gate.name)
        torch.testing.assert_close(values.double(), z[ids], rtol=1e-6, atol=1e-7)
