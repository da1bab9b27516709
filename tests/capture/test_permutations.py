"""Permutation tables and squeeze inputs against brute force from independently recorded values."""

from __future__ import annotations

import torch

from analysis.capture.collect import collect
from analysis.capture.keys import pseudo_labels
from analysis.capture.stats import StatsConfig
from analysis.testing.nets import batches, record_gates


def test_permutation_tables_equal_brute_force_relabelling(planted):
    model, x, y = planted
    stats = collect(model, batches(x, y, 100), 10, config=StatsConfig(10, permutations=3, seed=5), progress=False)
    truth = record_gates(model, [g.path for g in stats.gates], x)
    ids = torch.arange(len(y))
    for gate in stats.gates:
        count, total, total_sq = stats.perm_moments(gate.name)
        g = truth[gate.path] - stats.shift(gate.name)
        for p in range(3):
            z = pseudo_labels(ids, p, 10, 5)
            assert torch.equal(count[p], torch.bincount(z, minlength=10))
            for c in range(10):
                torch.testing.assert_close(total[p, c], g[z == c].sum(0), rtol=1e-9, atol=1e-12)
                torch.testing.assert_close(total_sq[p, c], (g[z == c] ** 2).sum(0), rtol=1e-9, atol=1e-12)


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
    for gate in stats.gates:
        z = torch.cat(seen[gate.name])
        count, total, total_sq = (m.sum(0) for m in stats.inputs.moments(gate.name))
        assert torch.equal(count, torch.bincount(y, minlength=10))
        mean = stats.inputs.shift(gate.name) + total / count[:, None]
        expected = torch.stack([z[y == c].mean(0) for c in range(10)])
        torch.testing.assert_close(mean, expected, rtol=1e-6, atol=1e-7)
        values, labels, ids = stats.inputs.reservoir(gate.name)
        torch.testing.assert_close(values.double(), z[ids], rtol=1e-6, atol=1e-7)
