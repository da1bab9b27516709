"""Per-sample keys from sample ids, and the top-k with ties broken by id: what makes GateStats' samples mergeable.

    key, shard_hash = sample_hash(ids, seed)     # the reservoir's key, the shard's hash
    y_p = pseudo_labels(ids, p, classes, seed)   # relabelling p: the permutation null's labels
    values, ids = top_k(values, ids, k)          # per row, the k largest with their ids

Both are functions of the sample id alone, never of the order samples arrive in, so that two
processes that saw disjoint halves of the data combine into exactly the whole's answer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_PRIME = 2147483647  # 2**31 - 1: keeps every product of the hash below 2**62
MAX_ID = 2**32 - 2  # sample ids share an int64 key with a 31- or 32-bit value (top_k, the reservoir's order)


def _mix(x: torch.Tensor, a: int, b: int | torch.Tensor) -> torch.Tensor:
    """One round of an integer hash on values in [0, 2**31 - 1)."""
    x = x ^ (x >> 13)
    x = (x * a + b) % _PRIME
    return x ^ (x >> 7)


def sample_hash(ids: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(key in (0, 1) float64, shard-hash int64) for each sample id: [N] int64 -> [N], [N]."""
    x = (ids % _PRIME) ^ ((ids // _PRIME) % _PRIME)
    x = _mix(x, 48271, (seed * 7919 + 1) % _PRIME)
    x = _mix(x, 16807, 12345)
    key = (_mix(x, 69621, 777) + 0.5) / _PRIME
    return key.to(torch.float64), _mix(x, 39373, 4242)


def permuted_labels(ids: torch.Tensor, perms: torch.Tensor, classes: torch.Tensor, seed: int) -> torch.Tensor:
    """Pseudo-labels of every relabelling in `perms` at once, drawn among the labels `classes` [K']
    int64 (on the ids' device): ids [N] int64, perms [P] int64 -> [P, N] int64.

    A hash of (sample id, p, seed) with its own constants, so it is independent of the data, of the
    true labels and of the reservoir keys and shards; the same on every device and in every pass.
    The hash picks the position among `classes`, so a class subset labelled 1, 254, 300 is relabelled
    as the same samples labelled 0, 1, 2 would be."""
    x = ((ids % _PRIME) ^ ((ids // _PRIME) % _PRIME))[None, :]
    x = _mix(x, 69621, ((seed * 104729 + perms * 7919 + 3) % _PRIME)[:, None])
    x = _mix(x, 48271, 991)
    x = _mix(x, 16807, 54321)
    return classes[x % classes.numel()]


def pseudo_labels(ids: torch.Tensor, p: int, classes: int | Sequence[int], seed: int) -> torch.Tensor:
    """Relabelling p of the samples `ids` [N] int64 -> [N] int64 among `classes` (labels, or a count
    K for 0..K-1; `StatsConfig.present`): GateStats' permutation tables use these labels, so a
    reservoir's ids can be relabelled alike."""
    labels = torch.arange(classes) if isinstance(classes, int) else torch.as_tensor(classes, dtype=torch.int64)
    return permuted_labels(ids, torch.tensor([p], device=ids.device), labels.to(ids.device), seed)[0]


def check_ids(ids: torch.Tensor) -> None:
    """ValueError for sample ids outside [0, MAX_ID]; checked only on the CPU (no device sync)."""
    if ids.device.type == "cpu" and ids.numel() and not 0 <= int(ids.min()) <= int(ids.max()) <= MAX_ID:
        raise ValueError(f"sample ids must lie in 0..{MAX_ID}, not {int(ids.min())}..{int(ids.max())}.")


def top_k(values: torch.Tensor, ids: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the k largest values with their ids; ties go to the smaller id, so that merging
    partial results gives exactly the whole's answer. values, ids: [C, M] -> [C, k], [C, k].

    One int64 key per entry orders by value, then by smaller id: the float32 bits made monotonic
    (negative floats have their magnitude bits flipped) above 2**32 - 2 - id, for ids in
    [-1, 2**32 - 2]. A single topk on the keys replaces two full sorts of every row."""
    bits = values.float().nan_to_num(-float("inf")).view(torch.int32)
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long()
    order = ((ordered << 32) | (MAX_ID - ids)).topk(k, dim=1).indices
    return values.gather(1, order), ids.gather(1, order)
