"""Distributed collection: shards, the merge across torchrun processes, and its errors."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pandas as pd
import pytest
import torch
import torch.distributed as dist

from analysis import load_run
from analysis.cli import main
from analysis.capture.collect import collect
from analysis.data.source import limited_indices
from analysis.data import make_loader, open_data
from analysis.capture.ranges import shift_and_quantiles, histogram_edges
from analysis.capture.distributed import TORCHRUN_ENV, join_ranks, merge_ranks, shard_indices
from analysis.errors import DistributedError
from analysis.models.architectures import build_model
from analysis.models.spec import open_model_and_data
from analysis.testing.nets import batches, record_gates

SYNTH = "synthetic:classes=3,n=301,size=16,channels=1"  # an odd count: the two shards differ in size
# A small reservoir and top-k, so that merging has to choose among the ranks' samples. Batches of
# one sample and one thread everywhere, so that each gate value is computed bit for bit alike in
# every process (batches of other sizes and members differ in the last bit); only float64 sums
# then depend on the order of addition.
CALIBRATION = 64  # fewer than the data: the samples of smallest id are chosen from both processes' first 64
STATS_ARGS = ["--reservoir", "8", "--topk", "5", "--shards", "4", "--batch-size", "1", "--permutations", "19",
              "--calibration", str(CALIBRATION)]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def collect_args(tmp_path, out: str) -> list[str]:
    weights = tmp_path / "w.pth"
    if not weights.exists():  # one model file for every process
        with torch.random.fork_rng():
            torch.manual_seed(0)
            torch.save(build_model("se_resnet20", in_channels=1, num_classes=3).state_dict(), weights)
    return ["collect", "--model", "se_resnet20", "--weights", str(weights), "--data", SYNTH,
            "--device", "cpu", "--quiet", *STATS_ARGS, "--out", str(tmp_path / out)]


def run(command: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=cwd, env=ONE_THREAD)


def torchrun(args: list[str], cwd) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "analysis", *args, "--distributed"], cwd)


def test_shards_are_disjoint_cover_everything_and_differ_by_at_most_one():
    for total, world in [(301, 2), (10, 3), (7, 7)]:
        shards = [shard_indices(total, rank, world) for rank in range(world)]
        assert sorted(i for shard in shards for i in shard) == list(range(total))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    with pytest.raises(DistributedError, match="3 processes need at least 3 samples, the data has 2"):
        shard_indices(2, 0, 3)


def test_a_shard_loader_keeps_global_ids():
    source = open_data(SYNTH)
    loaded = list(make_loader(source, 16, limit=100, indices=shard_indices(100, 1, 3)))
    ids = torch.cat([ids for _, _, ids in loaded])
    kept = limited_indices(source.dataset, 100)  # --limit's stratified subset, whose positions the shard takes
    assert ids.tolist() == kept[1::3]
    assert torch.equal(loaded[0][0][2], source.dataset[kept[7]][0])


def test_torchrun_with_two_processes_equals_one_process(tmp_path):
    """Every column of the blocks and channels tables of a 2-process run equals the 1-process run
    on the same data, mi_bits included: both calibrate on the CALIBRATION samples of smallest id
    (gathered from both processes), so the histograms are the same counts over the same edges.
    Tolerance, stated before the run: 1e-9 relative for what the float64 sums give (added in
    another order) and 1e-5 relative for the permutation null's columns (float32 sums, added in
    another order); counts, histograms, calibration, reservoirs, top-k, probes and mi_bits exactly."""
    done = torchrun(collect_args(tmp_path, "dist"), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("onset (shape):") == 1  # only rank 0 prints and writes
    single_done = run([sys.executable, "-m", "analysis", *collect_args(tmp_path, "single")], tmp_path)
    assert single_done.returncode == 0, single_done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist", "single", "w.pth"]
    merged, single = load_run(tmp_path / "dist"), load_run(tmp_path / "single")
    assert merged.document["processes"] == 2 and merged.document["job"]["distributed"]
    a, b = merged.stats, single.stats
    assert a.samples == b.samples == 301
    for x, y in ((a, b), (a.inputs, b.inputs)):
        for gate in y.gates:
            tx, ty = x.gate_tensors(gate.name), y.gate_tensors(gate.name)
            for field in ty:
                if field in ("sum", "sumsq"):
                    torch.testing.assert_close(tx[field], ty[field], rtol=1e-9, atol=1e-12, msg=f"{gate.name}/{field}")
                elif field == "perm_sum":  # ~100 values below 1 per pseudo-class: 100 * 10 * 2**-24 < 1e-4
                    torch.testing.assert_close(tx[field], ty[field], rtol=0, atol=1e-4, msg=f"{gate.name}/{field}")
                elif field != "reservoir":  # its slots depend on the order samples came in: compared by key below
                    assert torch.equal(tx[field], ty[field]), f"{gate.name}/{field}"
            ra, rb = x.reservoir(gate.name), y.reservoir(gate.name)
            assert len(rb[2]) == 3 * 8 and all(torch.equal(u, v) for u, v in zip(ra, rb)), gate.name
    # The calibration sample is the data's samples 0..CALIBRATION-1, whichever process read them:
    # the edges are those of their gate values, recorded by plain hooks (to float32 rounding).
    model, _, source = open_model_and_data("se_resnet20", SYNTH, weights=tmp_path / "w.pth")
    first = torch.stack([source.dataset[i][0] for i in range(CALIBRATION)])
    v = record_gates(model.eval(), [g.path for g in b.gates], first)
    for gate in b.gates:
        expected = histogram_edges(shift_and_quantiles(v[gate.path], b.config.bins)[1], bounded=True)
        torch.testing.assert_close(b.histogram(gate.name)[1], expected, rtol=1e-6, atol=1e-9, msg=gate.name)
    for table in ("blocks", "channels"):
        x, y = getattr(merged, table), getattr(single, table)
        null = [c for c in x.columns if "perm" in c and c != "probe_perm"]
        pd.testing.assert_frame_equal(x.drop(columns=null), y.drop(columns=null), rtol=1e-9, check_exact=False)
        pd.testing.assert_frame_equal(x[null], y[null], rtol=1e-5, check_exact=False)
        assert (x[[c for c in x.columns if c.startswith("mi_bits")]] == y[[c for c in y.columns if c.startswith("mi_bits")]]).all().all()


def test_torchrun_failure_on_every_rank_is_one_sentence_each(tmp_path):
    done = torchrun([*collect_args(tmp_path, "dist"), "--limit", "1"], tmp_path)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("se-analysis: error:")]
    assert errors == ["se-analysis: error: 2 processes need at least 2 samples, the data has 1; start fewer."] * 2
    assert not (tmp_path / "dist").exists()  # (torchrun itself then prints its ChildFailedError traceback)


def test_distributed_without_torchrun_is_one_sentence(tmp_path, monkeypatch, capsys):
    for name in TORCHRUN_ENV:
        monkeypatch.delenv(name, raising=False)
    assert main([*collect_args(tmp_path, "run"), "--distributed"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("se-analysis: error: --distributed needs the processes that torchrun starts")
    assert "\n" not in err and not (tmp_path / "run").exists()


@pytest.fixture
def one_process(monkeypatch):
    """torchrun's environment for a world of one process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_one_process_merges_to_itself_and_always_leaves_the_group(one_process, planted):
    model, x, y = planted
    stats = collect(model, batches(x[:40], y[:40], 20), 10, progress=False)
    before = stats.state_dict()
    with join_ranks(torch.device("cpu")) as rank:
        assert (rank.rank, rank.world, rank.shard(40)) == (0, 1, range(40))
        merge_ranks(stats)
    assert not dist.is_initialized()
    assert stats.samples == 40
    for key, value in stats.state_dict().items():
        assert torch.equal(value, before[key]), key
    with pytest.raises(KeyError), join_ranks(torch.device("cpu")):
        raise KeyError("boom")
    assert not dist.is_initialized()
