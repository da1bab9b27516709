"""Reservoir: a uniform sample of at most R samples per class that merges exactly.

    reservoir = Reservoir(num_classes=10, size=32, device="cuda")
    dest = reservoir.add(labels, keys, ids)   # per sample its slot, or reservoir.scratch if not kept
    slots = reservoir.merge(other)            # per slot, the slot of (self's, then other's) it took

A bottom-k sampler: every sample brings a key in [0, 1) and each class keeps the R samples with
the smallest keys. GateStats derives the key from a hash of the sample id, so what is kept does not
depend on the order samples arrive in; a class's kept set is then a uniform sample without
replacement, the same samples for every gate, and two reservoirs of disjoint samples merge into
exactly the reservoir of their union. The reservoir holds only keys and ids; the caller keeps the
payload (GateStats' gate vectors) in rows of the same slots and moves it with the slots returned.

Layout, K classes and R slots per class: `keys [K*R+1]` float64 (inf: empty) and `ids [K*R+1]`
int64 (-1: empty); slot c*R + j belongs to class c, and the last, `scratch`, absorbs the samples
not kept. Samples are ordered by key at 2**-31 resolution, then by smaller id, in one int64 (the
key's 31 bits above the 32-bit id), so equal keys are decided alike in every pass and every merge.
Nothing here synchronises with the host.
"""

from __future__ import annotations

import torch

_EMPTY = torch.iinfo(torch.int64).max  # the order of an empty slot: after every sample


def _order(keys: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """int64 that sorts samples by key (to 31 bits), then by smaller id; _EMPTY for empty slots.
    keys [M] float64 in [0, 1) or inf, ids [M] int64 in [0, 2**32 - 2] -> [M] int64."""
    finite = torch.isfinite(keys)
    high = (torch.where(finite, keys, 0.0) * 2**31).floor().long()  # exact: a power of two
    return torch.where(finite, (high << 32) | ids, _EMPTY)


class Reservoir:
    """The kept keys and ids of a per-class bottom-k sample; see the module docstring."""

    def __init__(
        self,
        num_classes: int,
        size: int,
        device: torch.device | str = "cpu",
        keys: torch.Tensor | None = None,
        ids: torch.Tensor | None = None,
    ) -> None:
        """Empty, or holding stored `keys` and `ids` (the layout of the module docstring), moved to `device`."""
        self.num_classes, self.size = num_classes, size
        slots = num_classes * size + 1
        self.keys = torch.full((slots,), float("inf"), dtype=torch.float64, device=device) if keys is None else keys.to(device)
        self.ids = torch.full((slots,), -1, dtype=torch.int64, device=device) if ids is None else ids.to(device)

    @property
    def scratch(self) -> int:
        """The slot of samples not kept."""
        return self.num_classes * self.size

    def add(self, labels: torch.Tensor, keys: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Offer a batch, on the reservoir's device: labels [N] int64 in 0..K-1, keys [N] float64,
        ids [N] int64. Returns the slot [N] int64 each sample now holds, `scratch` where not kept."""
        k, r, n, dev = self.num_classes, self.size, labels.shape[0], self.keys.device
        own = labels[None, :] == torch.arange(k, device=dev)[:, None]  # [K, N]
        old = _order(self.keys[:-1], self.ids[:-1]).view(k, r)
        new = torch.where(own, _order(keys, ids)[None, :], _EMPTY)
        kept, pos = torch.cat([old, new], dim=1).topk(r, dim=1, largest=False)  # [K, r]
        is_new = (pos >= r) & (kept != _EMPTY)
        old_kept = torch.zeros(k, r + 1, dtype=torch.bool, device=dev)
        old_kept.scatter_(1, torch.where(pos < r, pos, r), True)
        free = ~old_kept[:, :r]  # slots whose old entry was dropped (or never filled)
        # The j-th new entry of class c goes to the j-th free slot of class c.
        free_rank = free.cumsum(1) - 1
        slot_of_rank = torch.full((k, r + 1), r, dtype=torch.int64, device=dev)
        slot_of_rank.scatter_(1, torch.where(free, free_rank, r), torch.arange(r, device=dev).expand(k, r))
        new_rank = torch.where(is_new, is_new.cumsum(1) - 1, r)
        dest = slot_of_rank.gather(1, new_rank) + torch.arange(k, device=dev)[:, None] * r
        sample = torch.where(is_new, pos - r, n)  # batch row of each kept new entry, n = none
        dest_of_sample = torch.full((n + 1,), self.scratch, dtype=torch.int64, device=dev)
        dest_of_sample.scatter_(0, sample.flatten(), torch.where(is_new, dest, self.scratch).flatten())
        dest_of_sample = dest_of_sample[:n]
        self.keys.index_copy_(0, dest_of_sample, keys)
        self.ids.index_copy_(0, dest_of_sample, ids)
        return dest_of_sample

    def merge(self, other: Reservoir) -> torch.Tensor:
        """Keep, per class, the R first samples of self and `other` (disjoint samples) together.
        Returns per slot [K*R] the slot it now holds in the slots of self, then other's, without
        the scratch: row `rows[i]` of `cat([mine[:-1], theirs[:-1]])` is the new slot i."""
        k, r, dev = self.num_classes, self.size, self.keys.device
        keys, ids = torch.cat([self.keys[:-1], other.keys[:-1].to(dev)]), torch.cat([self.ids[:-1], other.ids[:-1].to(dev)])
        order = _order(keys, ids).view(2, k, r).transpose(0, 1).reshape(k, 2 * r)  # [K, mine then theirs]
        pos = order.topk(r, dim=1, largest=False).indices
        rows = ((pos // r) * (k * r) + torch.arange(k, device=dev)[:, None] * r + pos % r).flatten()
        self.keys[:-1], self.ids[:-1] = keys[rows], ids[rows]
        return rows

    def kept(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(slots [n], labels [n], ids [n]) of the kept samples on the CPU, in sample order."""
        order = _order(self.keys[:-1], self.ids[:-1]).cpu()
        slots = (order != _EMPTY).nonzero().flatten()
        slots = slots[order[slots].argsort()]
        return slots, slots // self.size, self.ids[:-1].cpu()[slots]
