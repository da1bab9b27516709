"""Collection over several processes started by torchrun: disjoint shards, merged with collectives.

    torchrun --nproc_per_node=8 -m analysis collect --distributed ...

Rank r of W reads samples r, r + W, r + 2W, ... of the (limited) data set. DistributedSampler
would pad the last round with repeated samples, which GateStats would count twice; strided shards
never repeat one, and the sample ids stay indices into the whole data set. Each rank keeps its own
GateStats on its device, then `merge_ranks` combines them (NCCL on GPUs, gloo on CPUs) into what
one process would have collected over all the data, and rank 0 alone writes the run folder. For
that, the ranks calibrate each channel's shift and histogram edges on one sample, the samples of
smallest id gathered from all of them (`gather_ranks`, GateStats' `gather`): the one process's
calibration sample too, so that sums and histograms add exactly and equal one process's.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from analysis.capture.fields import Merge
from analysis.capture.stats import GateStats
from analysis.errors import DistributedError, first_line

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# The longest a rank waits for the others in one collective: long enough for ranks that finish
# their shards at different times, short enough that one crashed rank does not hang the rest forever.
TIMEOUT = timedelta(minutes=30)
# The collective of each elementwise merge rule (the fields' rules are in capture.fields).
_REDUCE_OPS = {Merge.ADD: dist.ReduceOp.SUM, Merge.SHIFTED: dist.ReduceOp.SUM, Merge.BINNED: dist.ReduceOp.SUM,
               Merge.MIN: dist.ReduceOp.MIN, Merge.MAX: dist.ReduceOp.MAX}


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


def gather_ranks(ids: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every rank's calibration candidates, concatenated in rank order, on every rank (GateStats'
    `gather` under torchrun; every rank calls it once per calibration): ids [n_r] int64 and
    values [n_r, C] float32 of each rank -> ids [sum n_r], values [sum n_r, C]. Ranks may hold
    different counts (a short shard): each sends its count first, then its rows padded to the most."""
    try:
        world = dist.get_world_size()
        counts = [torch.zeros(1, dtype=torch.int64, device=ids.device) for _ in range(world)]
        dist.all_gather(counts, torch.tensor([ids.numel()], dtype=torch.int64, device=ids.device))
        sizes = [int(c) for c in counts]
        most = max(sizes)
        padded = [torch.zeros(most, *t.shape[1:], dtype=t.dtype, device=t.device) for t in (ids, values)]
        for pad, t in zip(padded, (ids, values)):
            pad[: t.shape[0]] = t
        gathered = []
        for pad in padded:
            parts = [torch.empty_like(pad) for _ in range(world)]
            dist.all_gather(parts, pad)
            gathered.append(torch.cat([part[:n] for part, n in zip(parts, sizes)]))
    except RuntimeError as e:
        raise _peer_failed("gather the samples that set the histogram edges", e) from None
    return gathered[0], gathered[1]


def merge_ranks(stats: GateStats) -> GateStats:
    """Turn `stats` (this rank's shard, finished) into the statistics of every rank's samples, on every rank.

    The fields that combine elementwise (`capture.fields`: sums, counts, histograms, min, max) are
    all-reduced. The reservoir and top-k are broadcast one rank at a time and folded in by
    GateStats.merge_sampled, so they equal one process's exactly, and only one other rank's copy
    is held at once (about 1 GB for ImageNet-scale runs).
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    if stats.inputs is not None:
        merge_ranks(stats.inputs)
    try:
        stats.reduce(lambda t, rule: dist.all_reduce(t, _REDUCE_OPS[rule]))
        own = {key: t.clone() for key, t in stats.sampled_state().items()}
        for t in stats.sampled_state().values():
            dist.broadcast(t, 0)  # every rank starts from rank 0's reservoir and top-k
        for src in range(1, world):
            part = own if src == rank else {key: torch.empty_like(t) for key, t in own.items()}
            for t in part.values():
                dist.broadcast(t, src)
            stats.merge_sampled(part)
    except RuntimeError as e:
        raise _peer_failed("merge statistics", e) from None
    return stats


def _peer_failed(what: str, error: RuntimeError) -> DistributedError:
    """The error of a failed collective: mostly another rank stopped (and printed why) or timed out."""
    return DistributedError(
        f"process {dist.get_rank()} could not {what} with the others (did one fail?): {first_line(error)}"
    )
