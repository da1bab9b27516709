"""Property tests over the field table (capture.fields): for every field, split-and-merge equals the
whole and a save/load round trip is exact, in one process and across two (torchrun, gloo).

Run as a script under torchrun, this file is the two processes' side (`ranks`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from analysis.capture.config import StatsConfig
from analysis.capture.fields import FIELDS, Merge
from analysis.capture.gates import Gate
from analysis.capture.stats import GateStats

GATES = [Gate("SE_2_1", 1, "a", 3), Gate("SE_2_2", 2, "b", 5), Gate("SE_3_1", 3, "c", 4)]
K, N, BATCH = 4, 240, 20
# Every group kept; the calibration sample (ids 0..31) lies in the first half and in both processes' first 32.
CONFIG = StatsConfig(K, bins=6, reservoir=5, topk=3, shards=3, permutations=7, calibration=32)
# float32 permutation sums: ~N / K = 60 values below 1 per pseudo-class; adding them in another order
# moves a sum by at most 60 additions' rounding, each 2**-24 of a partial sum below 60: 2.2e-4.
F32_SUMS = 3e-4


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(labels [N], gate values [N, 12] in (0, 1), squeezed inputs z [N, 12]) with class effects."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, K, (N,), generator=g)
    offsets = torch.randn(K, 12, generator=g)
    values = torch.sigmoid(torch.randn(N, 12, generator=g) + offsets[y])
    values[:, ::4] = torch.sigmoid(40 * values[:, ::4] - 20)  # saturated channels: many gates exactly 1.0, some near 0
    z = torch.randn(N, 12, generator=g) * 3 + offsets[y]
    return y, values, z


def empty(gather=None) -> GateStats:
    return GateStats(GATES, CONFIG, inputs=GateStats(GATES, CONFIG.squeezed(), gather=gather), gather=gather)


def feed(stats: GateStats, indices: list[int]) -> GateStats:
    """Add the samples `indices` (their ids) in batches of BATCH, every gate and z, then finish."""
    y, values, z = data()
    for start in range(0, len(indices), BATCH):
        part = torch.tensor(indices[start : start + BATCH])
        stats.begin_batch(y[part], part)
        for gate, cols in zip(GATES, stats.layout.columns):
            stats.update(gate.name, values[part][:, cols])
            stats.inputs.update(gate.name, z[part][:, cols])
        stats.end_batch()
    stats.finish()
    return stats


def assert_fields_equal(a: GateStats, b: GateStats) -> None:
    """Every field of the table, by its merge rule: sums to their float rounding, the reservoir by
    sample key (its slots depend on arrival order), everything else exactly."""
    for stats_a, stats_b in ((a, b), (a.inputs, b.inputs)):
        assert set(stats_a.layout.fields) == set(stats_b.layout.fields)
        for gate in GATES:
            ta, tb = stats_a.gate_tensors(gate.name), stats_b.gate_tensors(gate.name)
            for field in stats_a.layout.fields.values():
                x, y = ta[field.name], tb[field.name]
                if field.merge is Merge.SAMPLED:
                    assert all(torch.equal(u, v) for u, v in zip(stats_a.reservoir(gate.name), stats_b.reservoir(gate.name)))
                elif field.merge is Merge.SHIFTED and field.dtype == torch.float32:
                    torch.testing.assert_close(x, y, rtol=0, atol=F32_SUMS, msg=f"{gate.name}/{field.name}")
                elif field.merge is Merge.SHIFTED:
                    torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12, msg=f"{gate.name}/{field.name}")
                else:
                    assert torch.equal(x, y), f"{gate.name}/{field.name}"
    assert a.samples == b.samples


def test_the_statistics_keep_every_field_of_the_table_and_z_what_the_tables_read():
    stats = empty()
    assert list(stats.layout.fields) == [f.name for f in FIELDS]
    assert set(stats.inputs.layout.fields) == {"shift", "count", "sum", "sumsq", "nonfinite", "below", "above",
                                               "min", "max", "reservoir"}
    cheap = GateStats(GATES, StatsConfig(K, skip=("reservoir", "top")))
    assert cheap.sampler is None and not {"reservoir", "top_values", "top_ids"} & set(cheap.layout.fields)


def test_split_and_merge_equals_the_whole_for_every_field():
    """Two halves of the data merged equal the whole; a half alone differs in every summed field the
    data fills (the problem counters stay 0 in clean data).
    The second half is given the whole's calibration (its own would be other samples: merging then
    moves its histograms by bin centre, tested in test_stats)."""
    whole = feed(empty(), list(range(N)))
    first = feed(empty(), list(range(N // 2)))
    second = empty()
    for mine, theirs in ((second, whole), (second.inputs, whole.inputs)):
        for gate in GATES:
            for field in mine.layout.by_merge(Merge.CALIBRATION):
                mine.set_tensor(f"{gate.name}/{field}", theirs.gate_tensors(gate.name)[field])
    feed(second, list(range(N // 2, N)))
    half = feed(empty(), list(range(N // 2)))
    assert_fields_equal(first.merge(second), whole)
    summed = whole.layout.by_merge(Merge.ADD, Merge.SHIFTED, Merge.BINNED)
    assert all(not torch.equal(half.fused[name], whole.fused[name]) for name in summed if whole.fused[name].any())


def test_save_and_load_round_trip_is_exact_for_every_field():
    stats = feed(empty(), list(range(N)))
    again = GateStats.from_state(stats.describe(), stats.state_dict(),
                                 GateStats.from_state(stats.inputs.describe(), stats.inputs.state_dict()))
    for a, b in ((stats, again), (stats.inputs, again.inputs)):
        assert a.state_dict().keys() == b.state_dict().keys()
        assert all(torch.equal(a.state_dict()[key], b.state_dict()[key]) for key in a.state_dict())
    assert_fields_equal(stats, again)


def test_two_processes_equal_one_for_every_field_and_round_trip_exactly(tmp_path):
    """Under torchrun (2 processes, gloo), each process reads every second sample, calibrates on the
    samples of smallest id gathered from both, and merge_ranks combines them: every field equals one
    process's over all the data; the merged statistics saved and loaded are the same bits."""
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           __file__, str(tmp_path)], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    saved = {part: (json.loads((tmp_path / f"{part}.json").read_text()), load_file(tmp_path / f"{part}.safetensors"))
             for part in ("stats", "inputs")}
    merged = GateStats.from_state(*saved["stats"], GateStats.from_state(*saved["inputs"]))
    assert_fields_equal(merged, feed(empty(), list(range(N))))
    for part, stats in (("stats", merged), ("inputs", merged.inputs)):
        assert all(torch.equal(value, saved[part][1][key]) for key, value in stats.state_dict().items())


def ranks(out: Path) -> None:
    """One torchrun process: its strided shard, merged; rank 0 writes the statistics to `out`."""
    from analysis.capture.distributed import gather_ranks, join_ranks, merge_ranks

    with join_ranks(torch.device("cpu")) as rank:
        stats = merge_ranks(feed(empty(gather_ranks), list(rank.shard(N))))
        if rank.rank == 0:
            for part, s in (("stats", stats), ("inputs", stats.inputs)):
                save_file(s.state_dict(), str(out / f"{part}.safetensors"))
                (out / f"{part}.json").write_text(json.dumps(s.describe()))


if __name__ == "__main__":
    ranks(Path(sys.argv[1]))
