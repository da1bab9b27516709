"""Collection over several processes started by torchrun: disjoint shards, merged with collectives.

    torchrun --nproc_per_node=8 -m analysis collect --distributed ...

Rank r of W reads samples r, r + W, r + 2W, ... of the (limited) data set. DistributedSampler
would pad the last round with repeated samples, which GateStats would count twice; strided shards
never repeat one, and the sample ids stay indices into the whole data set. Each rank keeps its own
GateStats on its device, then `merge_ranks` combines them (NCCL on GPUs, gloo on CPUs) into what
one process would have collected over all the data, and rank 0 alone writes the run folder. For
that, the ranks first agree on each channel's shift and histogram edges (`agree_ranks`, called by
GateStats on its first batch), so that their sums and histograms add exactly.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from analysis.errors import DistributedError, first_line
from analysis.capture.config import CALIBRATION
from analysis.capture.stats import GateStats

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# The longest a rank waits for the others in one collective: long enough for ranks that finish
# their shards at different times, short enough that one crashed rank does not hang the rest forever.
TIMEOUT = timedelta(minutes=30)
ADDED = ("count", "perm_count", "sum", "sumsq", "perm_sum", "perm_sumsq", "hist", "sat_high", "sat_low",
         "nonfinite", "below", "above")  # add up over disjoint samples
SAMPLED = ("reservoir", "top_values", "top_ids")  # chosen by sample key or value: combined by GateStats.merge


@dataclass(frozen=True)
class Rank:
    """This process's place among the torchrun processes, and the device it collects on."""

    rank: int
    world: int
    device: torch.device

    def shard(self, total: int) -> range:
        """This rank's sample indices among the first `total`."""
        return shard_indices(total, self.rank, self.world)


def shard_indices(total: int, rank: int, world: int) -> range:
    """Every `world`-th index from `rank`: the shards are disjoint, cover range(total), and differ
    in size by at most one sample."""
    if total < world:
        raise DistributedError(f"{world} processes need at least {world} samples, the data has {total}; start fewer.")
    return range(rank, total, world)


@contextmanager
def join_ranks(device: torch.device) -> Iterator[Rank]:
    """Join torchrun's process group for the body and leave it on every exit path.

    A CUDA device without an index becomes this process's local GPU (LOCAL_RANK).
    """
    missing = [name for name in TORCHRUN_ENV if name not in os.environ]
    if missing:
        raise DistributedError(
            f"--distributed needs the processes that torchrun starts ({', '.join(missing)} not set); "
            "run `torchrun --nproc_per_node=N -m analysis collect --distributed ...`."
        )
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    except (RuntimeError, ValueError) as e:
        raise DistributedError(
            f"process {os.environ['RANK']} could not join the others on {device}: {first_line(e)}"
        ) from None
    try:
        yield Rank(dist.get_rank(), dist.get_world_size(), device)
    finally:
        dist.destroy_process_group()


def share_model(model: nn.Module) -> None:
    """Give every rank rank 0's weights and buffers, so that a randomly initialised model is one
    model on all ranks."""
    try:
        for t in model.state_dict().values():
            dist.broadcast(t, 0)
    except RuntimeError as e:
        raise _peer_failed("share the model", e) from None


def agree_ranks(shift: torch.Tensor, quantiles: torch.Tensor) -> None:
    """Make a first batch's calibration equal on every rank, in place (GateStats.agree under torchrun;
    every rank calls it once per calibration, at the same point of its collection): the mean of the
    ranks' shifts [C]; of the quantiles [C, B + 1] (ranges.first_batch), the mean over ranks of each
    one, then the least min and the largest max.

    Averaging quantile b over ranks averages their quantile functions (Vincent averaging), which for
    shards of one data set estimates the pooled quantile with one all-reduce, and keeps each
    channel's quantiles sorted (a mean of non-decreasing vectors does not decrease). The outer ones
    become the extremes, not means, so that the agreed range, like one process's, holds every
    first-batch value of every rank, and replacing them keeps the vector sorted."""
    try:
        world = dist.get_world_size()
        low, high = quantiles[:, 0].clone(), quantiles[:, -1].clone()
        for mean in (shift, quantiles):
            dist.all_reduce(mean)
            mean /= world
        dist.all_reduce(low, dist.ReduceOp.MIN)
        dist.all_reduce(high, dist.ReduceOp.MAX)
        quantiles[:, 0], quantiles[:, -1] = low, high
    except RuntimeError as e:
        raise _peer_failed("agree on the gates' histogram edges", e) from None


def merge_ranks(stats: GateStats) -> GateStats:
    """Turn `stats` (this rank's shard) into the statistics of every rank's samples, on every rank.

    Counts, sums and histograms are all-reduced, min and max too. The reservoir and top-k are
    broadcast one rank at a time and folded in by GateStats.merge, so they equal one process's
    exactly, and only one other rank's copy is held at once (about 1 GB for ImageNet-scale runs).
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    stats.flush()
    if stats.inputs is not None:
        merge_ranks(stats.inputs)
    try:
        own = {key: t.clone() for key, t in _sampled(stats).items()}
        for field in ADDED:
            dist.all_reduce(stats.fused[field])
        dist.all_reduce(stats.fused["min"], dist.ReduceOp.MIN)
        dist.all_reduce(stats.fused["max"], dist.ReduceOp.MAX)
        samples = torch.tensor(stats.samples, dtype=torch.int64, device=stats.device)
        dist.all_reduce(samples)
        for t in _sampled(stats).values():
            dist.broadcast(t, 0)  # every rank starts from rank 0's reservoir and top-k
        for src in range(1, world):
            part = own if src == rank else {key: torch.empty_like(t) for key, t in own.items()}
            for t in part.values():
                dist.broadcast(t, src)
            stats.merge(_holding(stats, part), inputs=False)
    except RuntimeError as e:
        raise _peer_failed("merge statistics", e) from None
    stats.samples = int(samples)
    return stats


def _sampled(stats: GateStats) -> dict[str, torch.Tensor]:
    """The reservoir and top-k tensors of `stats` (all gates), in the same order on every rank."""
    return {"_reservoir/keys": stats.reservoir_keys, "_reservoir/ids": stats.reservoir_ids,
            **{field: stats.fused[field] for field in SAMPLED}}


def _holding(stats: GateStats, part: dict[str, torch.Tensor]) -> GateStats:
    """A GateStats for GateStats.merge that holds another rank's reservoir and top-k and adds
    nothing else: zeros that take no memory for the sums, `stats`' own (already reduced) min/max and
    calibration."""
    peer = copy.copy(stats)
    peer.samples = 0
    peer.reservoir_keys, peer.reservoir_ids = part["_reservoir/keys"], part["_reservoir/ids"]
    peer.fused = {
        **{field: torch.zeros((), dtype=value.dtype, device=stats.device).expand_as(value)
           for field, value in stats.fused.items() if field in ADDED},
        **{field: stats.fused[field] for field in ("min", "max", *CALIBRATION)},
        **{field: part[field] for field in SAMPLED},
    }
    peer._pending = set()
    return peer


def _peer_failed(what: str, error: RuntimeError) -> DistributedError:
    """The error of a failed collective: mostly another rank stopped (and printed why) or timed out."""
    return DistributedError(
        f"process {dist.get_rank()} could not {what} with the others (did one fail?): {first_line(error)}"
    )
