"""Sample keys and top-k: functions of the sample alone, so partial results merge exactly."""

from __future__ import annotations

import pytest
import torch

from analysis.capture.keys import MAX_ID, check_ids, sample_hash, top_k


def test_sample_hash_depends_on_the_id_and_seed_only():
    ids = torch.tensor([0, 1, 2, 2**31 - 1, 2**31, MAX_ID])
    key, shard = sample_hash(ids, seed=3)
    again, _ = sample_hash(ids.flip(0), seed=3)
    assert torch.equal(again.flip(0), key)  # no dependence on position in the batch
    assert ((key > 0) & (key < 1)).all() and key.dtype == torch.float64 and (shard >= 0).all()
    assert not torch.equal(sample_hash(ids, seed=4)[0], key)
    # the fold of 64-bit ids onto 31 bits makes some keys equal (2**31 - 1 and 1 both fold to 1),
    # which is why the reservoir breaks ties between equal keys by id
    assert key[3] == key[1]


def test_ids_outside_the_key_range_are_refused():
    check_ids(torch.tensor([0, MAX_ID]))
    with pytest.raises(ValueError, match="sample ids must lie in"):
        check_ids(torch.tensor([0, MAX_ID + 1]))
    with pytest.raises(ValueError, match="sample ids must lie in"):
        check_ids(torch.tensor([-1, 3]))


def test_top_k_breaks_ties_by_smaller_id_and_merges_exactly():
    g = torch.Generator().manual_seed(1)
    values = (torch.rand(5, 40, generator=g) * 4).round() / 4 - 0.5  # many ties, negative and positive
    values[0, :3] = -float("inf")  # empty slots of a fresh table
    ids = torch.randperm(40, generator=g).expand(5, -1).clone()
    ids[0, :3] = -1
    top_values, top_ids = top_k(values, ids, 7)
    for row in range(5):  # brute force: sort by (value descending, id ascending)
        ranked = sorted(zip(values[row].tolist(), ids[row].tolist()), key=lambda p: (-p[0], p[1]))[:7]
        assert top_values[row].tolist() == [v for v, _ in ranked] and top_ids[row].tolist() == [i for _, i in ranked]
    halves = [top_k(values[:, part], ids[:, part], 7) for part in (slice(0, 25), slice(25, 40))]
    merged = top_k(torch.cat([h[0] for h in halves], 1), torch.cat([h[1] for h in halves], 1), 7)
    assert torch.equal(merged[0], top_values) and torch.equal(merged[1], top_ids)
