"""GateStats against a brute-force computation that keeps every gate vector."""

from __future__ import annotations

import pytest
import torch

from analysis import GateStats, StatsConfig, StatsMismatchError, collect, find_gates
from analysis.errors import GateValueError
from analysis.capture.collect import GateHooks, gate_precision
from analysis.capture.gates import Gate
from analysis.models.architectures import build_model
from analysis.testing.brute import brute_histogram, brute_moments, stats_moments
from analysis.testing.nets import batches, record_gates

RTOL = 1e-6


def assert_matches_brute_force(stats: GateStats, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, autocast=None) -> None:
    k = stats.config.num_classes
    truth = record_gates(model, [g.path for g in stats.gates], x, autocast)
    for gate in stats.gates:
        g = truth[gate.path]
        count, mean, var = brute_moments(g, y, k)
        n, m, v = stats_moments(stats, gate.name)
        assert torch.equal(n, count)
        torch.testing.assert_close(m, mean, rtol=RTOL, atol=1e-12)
        torch.testing.assert_close(v, var, rtol=RTOL, atol=1e-12)
        # histogram over each channel's own range: independent binning by bucketize on its edges
        hist, edges = stats.histogram(gate.name)
        assert int(hist[..., 1:-1].sum()) > 0.9 * hist.sum()  # the first batch's range holds most values
        for c in range(k):
            for ch in (0, gate.channels - 1):
                assert torch.equal(hist[c, ch], brute_histogram(g[y == c, ch], edges[ch])), (gate.name, c, ch)
        high, low = stats.saturation(gate.name)
        for c in range(k):
            assert torch.equal(high[c], (g[y == c] >= 0.9).sum(0)) and torch.equal(low[c], (g[y == c] <= 0.1).sum(0))
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


def test_bf16_autocast_feeds_the_excitation_of_the_block_input_in_float32(planted):
    """Under bf16 the statistics hold the gate the SE block computes in float32 from its own (bf16)
    input: brute force is the excitation written out in float64, sigmoid(fc2(relu(fc1(mean(x))))),
    on the block inputs recorded by an independent pre-hook (to 1e-6, float32 rounding). The float32
    sigmoid of the bf16 pre-activation (the previous design) misses it by far more."""
    model, x, y = planted
    stats = collect(model, batches(x, y, 100), 10, amp="bf16", progress=False)
    modules = dict(model.named_modules())
    blocks = {g.path: g.path.rpartition(".")[0] for g in stats.gates}
    seen: dict[str, list[torch.Tensor]] = {p: [] for p in [*blocks, *blocks.values()]}
    handles = [modules[p].register_forward_pre_hook(lambda m, i, p=p: seen[p].append(i[0].detach())) for p in seen]
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(x)
    finally:
        for h in handles:
            h.remove()
    for gate in stats.gates:
        block, inputs = modules[blocks[gate.path]], torch.cat(seen[blocks[gate.path]])
        assert seen[gate.path][0].dtype == torch.bfloat16  # the network's own excitation ran in bf16
        w1, b1, w2, b2 = (t.double() for t in (block.fc1.weight, block.fc1.bias, block.fc2.weight, block.fc2.bias))
        s64 = torch.sigmoid(torch.relu(inputs.double().mean((2, 3)) @ w1.T + b1) @ w2.T + b2)
        count, mean, var = brute_moments(s64, y, 10)
        n, m, v = stats_moments(stats, gate.name)
        torch.testing.assert_close(m, mean, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(v, var, rtol=1e-4, atol=1e-10)
        pre_gate = brute_moments(torch.sigmoid(torch.cat(seen[gate.path]).double()), y, 10)[1]
        assert (pre_gate - mean).abs().max() > 100 * (m - mean).abs().max()
    said = gate_precision(model, stats.gates, "bf16")["SE_2_1"]
    assert said == ("its SE block layer1.0.se re-run in float32 on its input's channel means, pooled in float32, "
                    "outside bf16 autocast")
    assert gate_precision(model, stats.gates, None)["SE_2_1"].startswith("float32 sigmoid of the upcast pre-activation")


def test_reservoir_is_a_uniform_sample_of_each_class(planted):
    model, x, y = planted
    stats = collect(model, batches(x, y, 64), 10, config=StatsConfig(10, reservoir=30), progress=False)
    _, labels, ids = stats.reservoir("SE_2_1")
    per_class = torch.bincount(labels, minlength=10)
    assert torch.equal(per_class, torch.clamp(torch.bincount(y, minlength=10), max=30))
    assert len(set(ids.tolist())) == len(ids)
    # kept ids are spread over the data, not the first or last samples seen
    assert ids.float().mean().item() == pytest.approx(len(y) / 2, rel=0.15)


def calibrated_like(template: GateStats) -> GateStats:
    """Empty statistics (and squeeze inputs) with the shifts and histogram edges of `template`."""
    inputs = GateStats(template.gates, template.inputs.config, template.class_names)
    fresh = GateStats(template.gates, template.config, template.class_names, inputs=inputs)
    for mine, theirs in ((fresh, template), (fresh.inputs, template.inputs)):
        for gate in template.gates:
            for field in ("shift", "edges"):
                if field in theirs.layout.fields:
                    mine.set_tensor(f"{gate.name}/{field}", theirs.gate_tensors(gate.name)[field])
    return fresh


def feed(model: torch.nn.Module, stats: GateStats, data) -> GateStats:
    with GateHooks(model, stats.gates, stats), torch.no_grad():
        for x, y, ids in data:
            stats.begin_batch(y, ids)
            model(x)
            stats.end_batch()
    stats.finish()
    return stats


def test_merge_of_two_halves_equals_the_whole(planted):
    model, x, y = planted
    cfg = StatsConfig(10, topk=8, reservoir=12, shards=4)
    whole = collect(model, batches(x, y, 100), 10, config=cfg, progress=False)
    parts = [batches(x, y, 100)[:5], batches(x, y, 100)[5:]]
    first, second = (feed(model, calibrated_like(whole), part) for part in parts)
    first_copy = feed(model, calibrated_like(whole), parts[0])
    merged = first.merge(second)
    assert merged.samples == whole.samples
    for gate in whole.gates:
        for a, b in [*zip(merged.moments(gate.name), whole.moments(gate.name)),
                     *zip(merged.inputs.moments(gate.name), whole.inputs.moments(gate.name))]:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        # float32 sums of ~120 values below 1 per pseudo-class, added in another order: each addition
        # rounds by at most 2**-24 of a partial sum (< 10), so they differ by at most 120 * 10 * 2**-24 < 1e-4
        for a, b in zip(merged.perm_moments(gate.name), whole.perm_moments(gate.name)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
        for a, b in [*zip(merged.histogram(gate.name), whole.histogram(gate.name)),
                     *zip(merged.saturation(gate.name), whole.saturation(gate.name)),
                     *zip(merged.top(gate.name), whole.top(gate.name)),
                     *zip(merged.reservoir(gate.name), whole.reservoir(gate.name)),
                     *zip(merged.inputs.reservoir(gate.name), whole.inputs.reservoir(gate.name))]:
            assert torch.equal(a, b)
    # a half alone is not the whole
    assert not torch.equal(first_copy.histogram("SE_3_1")[0], whole.histogram("SE_3_1")[0])
    assert not torch.equal(first_copy.perm_moments("SE_3_1")[1], whole.perm_moments("SE_3_1")[1])


def test_halves_calibrated_apart_merge_moments_exactly_and_histograms_by_bin_centre(planted):
    """Each half sets its own shifts and edges from its first batch: the merged moments are the
    whole's (Chan-style reshift, to float64 rounding); the histogram keeps every count, and the
    second half's values land in a cell of the first's edges that their own bin overlaps: at each
    edge t the merged cumulative count is off the true one by at most the second half's values in
    its cells that hold t inside."""
    model, x, y = planted
    cfg = StatsConfig(10, shards=2)
    whole = collect(model, batches(x, y, 100), 10, config=cfg, progress=False)
    first = collect(model, batches(x, y, 100)[:3], 10, config=cfg, progress=False)
    second = collect(model, batches(x, y, 100)[3:], 10, config=cfg, progress=False)
    assert not torch.equal(first.shift("SE_3_1"), second.shift("SE_3_1"))
    moved = {gate.name: second.histogram(gate.name) for gate in second.gates}
    merged = first.merge(second)
    truth = record_gates(model, [g.path for g in whole.gates], x)
    inf = torch.tensor([torch.inf], dtype=torch.float64)
    for gate in whole.gates:
        n, m, v = stats_moments(merged, gate.name)
        count, mean, var = brute_moments(truth[gate.path], y, 10)
        torch.testing.assert_close(m, mean, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(v, var, rtol=1e-9, atol=1e-15)
        hist, edges = merged.histogram(gate.name)
        assert torch.equal(hist.sum(-1), whole.histogram(gate.name)[0].sum(-1))
        exact = torch.stack([torch.stack([brute_histogram(truth[gate.path][y == c, ch], edges[ch])
                                          for ch in range(gate.channels)]) for c in range(10)])
        off = (hist.cumsum(-1) - exact.cumsum(-1))[..., :-1].abs()  # [K, C, B + 1]: at each edge
        theirs, their_edges = moved[gate.name]
        for ch in range(gate.channels):
            lo, hi = torch.cat([-inf, their_edges[ch]]), torch.cat([their_edges[ch], inf])  # their cells' bounds
            t = edges[ch][:, None]
            inside = ((lo < t) & (t < hi)).long()  # [B + 1, B + 2]: their cells that hold edge t inside
            assert (off[:, ch] <= theirs[:, ch] @ inside.T).all(), (gate.name, ch)


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
        for a, b in [*zip(again.histogram(gate.name), stats.histogram(gate.name)),
                     *zip(again.perm_moments(gate.name), stats.perm_moments(gate.name)),
                     *zip(again.saturation(gate.name), stats.saturation(gate.name))]:
            assert torch.equal(a, b)
        assert torch.equal(again.shift(gate.name), stats.shift(gate.name))
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
    must give the statistics a GateStats of that gate alone gives, for the batches held for the
    calibration (the first two) and those added at once."""
    gates = [Gate("SE_2_1", 1, "a", 3), Gate("SE_2_2", 2, "b", 5)]
    config = StatsConfig(4, topk=3, reservoir=2, calibration=12)
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
        together.end_batch()
        alone.end_batch()
    together.finish()
    alone.finish()
    mine, theirs = together.gate_tensors("SE_2_2"), alone.gate_tensors("SE_2_2")
    assert all(torch.equal(mine[field], theirs[field]) for field in theirs)
    assert int(together.gate_tensors("SE_2_1")["count"].sum()) == 12
    with pytest.raises(GateValueError, match="SE_2_1 .* saw 12 of 24 samples"):
        together.check()


def test_a_gate_given_values_twice_in_one_batch_is_refused():
    """An SE module run twice per forward pass through a user's own hook: the second run would
    overwrite the first and the counts would still match (issue 18.1)."""
    gates = [Gate("SE_2_1", 1, "a", 3)]
    stats = GateStats(gates, StatsConfig(2, topk=2, reservoir=2, calibration=4))
    se = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Sigmoid())
    se[1].register_forward_hook(lambda module, args, out: stats.update("SE_2_1", out))
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    stats.begin_batch(y, torch.arange(4))
    se(x)
    with pytest.raises(GateValueError, match="gate SE_2_1 was given values twice in one batch"):
        se(se[0](x))
    stats.end_batch()
    stats.begin_batch(y, torch.arange(4, 8))  # the next batch takes the gate again
    se(x)
    stats.end_batch()
    stats.finish()
    stats.check()  # every gate saw every sample once
    assert torch.equal(stats_moments(stats, "SE_2_1")[0], torch.tensor([4, 4]))
