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
from conftest import batches

from analysis import load_run
from analysis.cli import main
from analysis.capture.collect import collect
from analysis.data import make_loader, open_data
from analysis.capture.distributed import TORCHRUN_ENV, join_ranks, merge_ranks, shard_indices
from analysis.errors import DistributedError
from analysis.models.architectures import build_model

SYNTH = "synthetic:classes=3,n=301,size=16,channels=1"  # an odd count: the two shards differ in size
# A small reservoir and top-k, so that merging has to choose among the ranks' samples. Batches of
# one sample and one thread everywhere, so that each gate value is computed bit for bit alike in
# every process (batches of other sizes and members differ in the last bit); only float64 sums
# then depend on the order of addition.
STATS_ARGS = ["--reservoir", "8", "--topk", "5", "--shards", "4", "--batch-size", "1"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
SUMS = ("sum", "sumsq")


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
    assert ids.tolist() == list(range(1, 100, 3))
    assert torch.equal(loaded[0][0][2], source.dataset[7][0])


def test_torchrun_with_two_processes_equals_one_process(tmp_path):
    done = torchrun(collect_args(tmp_path, "dist"), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("onset block:") == 1  # only rank 0 prints and writes
    single_done = run([sys.executable, "-m", "analysis", *collect_args(tmp_path, "single")], tmp_path)
    assert single_done.returncode == 0, single_done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist", "single", "w.pth"]
    merged, single = load_run(tmp_path / "dist"), load_run(tmp_path / "single")
    assert merged.meta["processes"] == 2 and merged.meta["job"]["distributed"]
    a, b = merged.stats, single.stats
    assert a.samples == b.samples == 301
    for gate in b.gates:
        ta, tb = a.gate_tensors(gate.name), b.gate_tensors(gate.name)
        for field in ta:
            if field in SUMS:
                torch.testing.assert_close(ta[field], tb[field], rtol=1e-9, atol=0, msg=f"{gate.name}/{field}")
            elif field != "reservoir":  # its slots are in arrival order; compared below in key order
                assert torch.equal(ta[field], tb[field]), f"{gate.name}/{field}"
        ra, rb = a.reservoir(gate.name), b.reservoir(gate.name)
        assert len(rb[2]) == 3 * 8 and all(torch.equal(x, y) for x, y in zip(ra, rb)), gate.name
    pd.testing.assert_frame_equal(merged.blocks, single.blocks, rtol=1e-9)


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
