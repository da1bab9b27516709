"""GateStats against a brute-force computation that keeps every gate vector."""

from __future__ import annotations

import pytest
import torch
from conftest import batches, record_gates

from analysis import GateStats, StatsConfig, StatsMismatchError, collect, find_gates
from analysis.errors import GateValueError
from analysis.capture.gates import Gate
from analysis.models.architectures import build_model

RTOL = 1e-6


def brute_moments(g: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    count = torch.bincount(y, minlength=k)
    mean = torch.stack([g[y == c].mean(0) for c in range(k)])
    var = torch.stack([g[y == c].var(0, unbiased=False) for c in range(k)])
    return count, mean, var


def stats_moments(stats: GateStats, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    count, s, sq = stats.moments(name)
    n, s, sq = count.sum(0), s.sum(0), sq.sum(0)
    mean = s / n[:, None]
    return n, mean, sq / n[:, None] - mean**2


def assert_matches_brute_force(stats: GateStats, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, autocast=None) -> None:
    k, bins = stats.config.num_classes, stats.config.bins
    truth = record_gates(model, [g.path for g in stats.gates], x, autocast)
    for gate in stats.gates:
        g = truth[gate.path]
        count, mean, var = brute_moments(g, y, k)
        n, m, v = stats_moments(stats, gate.name)
        assert torch.equal(n, count)
        torch.testing.assert_close(m, mean, rtol=RTOL, atol=1e-12)
        torch.testing.assert_close(v, var, rtol=RTOL, atol=1e-9)
        # histogram: independent binning with torch.histc per class and channel
        hist = stats.histogram(gate.name)
        for c in range(k):
            for ch in (0, gate.channels - 1):
                expected = torch.histc(g[y == c, ch].float(), bins=bins, min=0, max=1).long()
                assert torch.equal(hist[c, ch], expected), (gate.name, c, ch)
        # top-k: the largest values per channel and the samples that hold them
        top_values, top_ids = stats.top(gate.name)
        kk = min(stats.config.topk, len(y))
        best = g.float().t().topk(kk, dim=1)
        torch.testing.assert_close(top_values[:, :kk], best.values, rtol=RTOL, atol=0)
        torch.testing.assert_close(g.float().t().gather(1, top_ids[:, :kk]), best.values, rtol=RTOL, atol=0)
        # reservoir: stored vectors are the true gate vectors of the stored sample ids and labels
        values, labels, ids = stats.reservoir(gate.name)
        torch.testing.assert_close(values, g[ids].float(), rtol=RTOL, atol=0)
        assert torch.equal(labels, y[ids])


def test_statistics_equal_brute_force(planted):
    model, x, y = planted
    stats = collect(model, batches(x, y, 100), 10, config=StatsConfig(10, topk=8, reservoir=20), progress=False)
    assert stats.samples == len(y)
    assert_matches_brute_force(stats, model, x, y)


def test_spatial_nosqueeze_gates_are_averaged_over_positions():
    torch.manual_seed(1)
    model = build_model("se_resnet20", se="nosqueeze", in_channels=1).eval()
    x = torch.randn(96, 1, 12, 12) * 3
    y = torch.randint(0, 4, (96,))
    stats = collect(model, batches(x, y, 32), 4, progress=False)
    assert len(stats.gates) == 9
    assert_matches_brute_force(stats, model, x, y)


def test_bf16_autocast_matches_brute_force_under_the_same_autocast(planted):
    # Same bf16 gate values, summed in float64 either way: equal to 1e-6 relative.
    model, x, y = planted
    stats = collect(model, batches(x, y, 100), 10, amp="bf16", progress=False)
    assert_matches_brute_force(stats, model, x, y, autocast=torch.bfloat16)
    # and bf16 class means stay within bf16 rounding (2**-8 relative) of the fp32 ones
    exact = collect(model, batches(x, y, 100), 10, progress=False)
    for gate in stats.gates:
        torch.testing.assert_close(stats_moments(stats, gate.name)[1], stats_moments(exact, gate.name)[1], rtol=2**-7, atol=2**-8)


def test_reservoir_is_a_uniform_sample_of_each_class(planted):
    model, x, y = planted
    stats = collect(model, batches(x, y, 64), 10, config=StatsConfig(10, reservoir=30), progress=False)
    _, labels, ids = stats.reservoir("SE_2_1")
    per_class = torch.bincount(labels, minlength=10)
    assert torch.equal(per_class, torch.clamp(torch.bincount(y, minlength=10), max=30))
    assert len(set(ids.tolist())) == len(ids)
    # kept ids are spread over the data, not the first or last samples seen
    assert ids.float().mean().item() == pytest.approx(len(y) / 2, rel=0.15)


def test_merge_of_two_halves_equals_the_whole(planted):
    model, x, y = planted
    cfg = StatsConfig(10, topk=8, reservoir=12, shards=4)
    whole = collect(model, batches(x, y, 100), 10, config=cfg, progress=False)
    parts = [batches(x, y, 100)[:5], batches(x, y, 100)[5:]]
    first = collect(model, parts[0], 10, config=cfg, progress=False)
    second = collect(model, parts[1], 10, config=cfg, progress=False)
    first_copy = collect(model, parts[0], 10, config=cfg, progress=False)
    merged = first.merge(second)
    assert merged.samples == whole.samples
    for gate in whole.gates:
        for a, b in zip(merged.moments(gate.name), whole.moments(gate.name)):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        assert torch.equal(merged.histogram(gate.name), whole.histogram(gate.name))
        for a, b in zip(merged.top(gate.name), whole.top(gate.name)):
            assert torch.equal(a, b)
        for a, b in zip(merged.reservoir(gate.name), whole.reservoir(gate.name)):
            assert torch.equal(a, b)
    # a half alone is not the whole
    assert not torch.equal(first_copy.histogram("SE_3_1"), whole.histogram("SE_3_1"))


def test_merge_refuses_other_settings(planted):
    model, x, y = planted
    a = collect(model, batches(x[:100], y[:100], 50), 10, progress=False)
    b = collect(model, batches(x[:100], y[:100], 50), 10, config=StatsConfig(10, bins=10), progress=False)
    with pytest.raises(StatsMismatchError):
        a.merge(b)


def test_state_round_trip_is_exact(planted):
    model, x, y = planted
    stats = collect(model, batches(x[:300], y[:300], 100), 10, progress=False)
    again = GateStats.from_state(stats.describe(), stats.state_dict())
    for gate in stats.gates:
        for a, b in zip(again.moments(gate.name), stats.moments(gate.name)):
            assert torch.equal(a, b)
        assert torch.equal(again.histogram(gate.name), stats.histogram(gate.name))
    assert again.samples == stats.samples and again.gates == stats.gates


def test_memory_does_not_grow_with_the_data(planted):
    model, x, y = planted
    small = collect(model, batches(x[:200], y[:200], 100), 10, progress=False)
    large = collect(model, batches(x, y, 100), 10, progress=False)
    size = lambda s: sum(t.numel() * t.element_size() for t in s.state_dict().values())  # noqa: E731
    assert size(small) == size(large)
    assert find_gates(model) == small.gates


def test_a_gate_that_skips_batches_leaves_the_others_exact():
    """Batches where every gate ran are added for all gates at once, the others gate by gate; both
    must give the statistics a GateStats of that gate alone gives."""
    gates = [Gate("SE_2_1", 1, "a", 3), Gate("SE_2_2", 2, "b", 5)]
    config = StatsConfig(4, topk=3, reservoir=2)
    together, alone = GateStats(gates, config), GateStats(gates[1:], config)
    g = torch.Generator().manual_seed(0)
    for i in range(4):
        y, ids = torch.randint(0, 4, (6,), generator=g), torch.arange(6 * i, 6 * i + 6)
        a, b = torch.rand(6, 3, generator=g), torch.rand(6, 5, generator=g)
        together.begin_batch(y, ids)
        alone.begin_batch(y, ids)
        if i % 2 == 0:
            together.update("SE_2_1", a)
        together.update("SE_2_2", b)
        alone.update("SE_2_2", b)
    mine, theirs = together.gate_tensors("SE_2_2"), alone.gate_tensors("SE_2_2")
    assert all(torch.equal(mine[field], theirs[field]) for field in theirs)
    assert int(together.gate_tensors("SE_2_1")["count"].sum()) == 12
    with pytest.raises(GateValueError, match="SE_2_1 .* saw 12 of 24 samples"):
        together.check()
