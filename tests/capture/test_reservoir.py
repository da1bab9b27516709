"""The per-class bottom-k reservoir alone: uniform inclusion, exact merge, ties, classes, short classes."""

from __future__ import annotations

import math

import torch
from scipy import stats as sps

from analysis.capture.keys import sample_hash
from analysis.capture.reservoir import Reservoir

LEVEL = 0.001  # significance level of the uniformity tests


def feed(reservoir: Reservoir, labels: torch.Tensor, keys: torch.Tensor, ids: torch.Tensor, batch: int) -> torch.Tensor:
    """Add in batches; returns the payload the caller keeps per slot (here each sample's id + 0.5),
    moved only by the slots `add` returns, so that it checks them."""
    payload = torch.full((reservoir.scratch + 1,), float("nan"), dtype=torch.float64)
    for start in range(0, len(labels), batch):
        part = slice(start, start + batch)
        dest = reservoir.add(labels[part], keys[part], ids[part])
        payload.index_copy_(0, dest, ids[part].double() + 0.5)
    return payload


def brute_force(labels: torch.Tensor, keys: torch.Tensor, ids: torch.Tensor, k: int, r: int) -> list[list[int]]:
    """Per class, the ids of its r first samples by (key to 31 bits, id), the documented order."""
    rows = sorted(zip(labels.tolist(), keys.tolist(), ids.tolist()), key=lambda t: (math.floor(t[1] * 2**31), t[2]))
    return [[i for c, _, i in rows if c == cls][:r] for cls in range(k)]


def kept_ids(reservoir: Reservoir) -> list[list[int]]:
    _, labels, ids = reservoir.kept()
    return [ids[labels == c].tolist() for c in range(reservoir.num_classes)]


def test_every_sample_is_kept_with_probability_r_over_n():
    """Over many seeds of the id hash, each of n samples of a class is kept R/n of the time.

    Each seed is a class of its own (classes never share slots, see below), so one reservoir
    runs a hundred seeds at once. Inclusion counts of sampling R of n without replacement, S times,
    have covariance S p (1-p) n/(n-1) (I - 1/n), so the scaled sum of squares is chi-square with
    n - 1 degrees of freedom; each count alone is Binomial(S, p)."""
    seeds, n, r, chunk = 2000, 50, 10, 100
    counts = torch.zeros(n, dtype=torch.float64)
    arrival = torch.Generator().manual_seed(0)
    for first in range(0, seeds, chunk):  # `chunk` seeds at a time: a reservoir's work grows with K x N
        ids = torch.arange(n).repeat(chunk)
        labels = torch.arange(chunk).repeat_interleave(n)
        keys = torch.cat([sample_hash(torch.arange(n), seed)[0] for seed in range(first, first + chunk)])
        order = torch.randperm(len(ids), generator=arrival)  # arrival order is irrelevant
        reservoir = Reservoir(chunk, r)
        feed(reservoir, labels[order], keys[order], ids[order], batch=997)
        _, kept_labels, kept = reservoir.kept()
        assert torch.equal(torch.bincount(kept_labels, minlength=chunk), torch.full((chunk,), r))
        counts += torch.bincount(kept, minlength=n)
    p = r / n
    chi2 = ((counts - seeds * p) ** 2).sum() / (seeds * p * (1 - p) * n / (n - 1))
    assert chi2 < sps.chi2.ppf(1 - LEVEL, n - 1)
    # and no single sample is kept too often or too rarely (two-sided, Bonferroni over the n samples)
    pvalues = [sps.binomtest(int(c), seeds, p).pvalue for c in counts]
    assert min(pvalues) > LEVEL / n


def test_merge_of_two_halves_equals_one_pass_in_any_order():
    g = torch.Generator().manual_seed(2)
    k, r, n = 3, 8, 200
    labels, keys, ids = torch.randint(0, k, (n,), generator=g), torch.rand(n, generator=g, dtype=torch.float64), torch.randperm(n, generator=g)
    whole = Reservoir(k, r)
    feed(whole, labels, keys, ids, batch=32)
    expected = brute_force(labels, keys, ids, k, r)
    assert kept_ids(whole) == expected
    half = torch.rand(n, generator=g) < 0.5  # two disjoint halves, interleaved in the data
    for first, second in ((half, ~half), (~half, half)):
        a, b = Reservoir(k, r), Reservoir(k, r)
        payload_a = feed(a, labels[first], keys[first], ids[first], batch=7)
        backwards = second.nonzero().flatten().flip(0)  # the other half arrives in reverse order
        payload_b = feed(b, labels[backwards], keys[backwards], ids[backwards], batch=13)
        rows = a.merge(b)
        assert kept_ids(a) == expected
        slots, _, kept = a.kept()
        moved = torch.cat([payload_a[:-1], payload_b[:-1]])[rows]  # the payload follows its sample
        assert torch.equal(moved[slots], kept.double() + 0.5)


def test_equal_keys_go_to_the_smaller_id_in_every_order_and_merge():
    k, r, n = 2, 5, 40
    labels, keys = torch.arange(n) % k, torch.full((n,), 0.25, dtype=torch.float64)
    ids = torch.randperm(n, generator=torch.Generator().manual_seed(3))
    one = Reservoir(k, r)
    feed(one, labels, keys, ids, batch=6)
    expected = [sorted(ids[labels == c].tolist())[:r] for c in range(k)]
    assert kept_ids(one) == expected
    a, b = Reservoir(k, r), Reservoir(k, r)
    feed(a, labels[:17], keys[:17], ids[:17], batch=5)
    feed(b, labels[17:], keys[17:], ids[17:], batch=5)
    a_copy, b_copy = Reservoir(k, r, keys=a.keys.clone(), ids=a.ids.clone()), Reservoir(k, r, keys=b.keys.clone(), ids=b.ids.clone())
    a.merge(b)
    b_copy.merge(a_copy)
    assert kept_ids(a) == kept_ids(b_copy) == expected
    # a real tie of the id hash: ids 1 and 2**31 - 1 get the same key
    tied = torch.tensor([2**31 - 1, 1])
    key = sample_hash(tied, 0)[0]
    for order in ([0, 1], [1, 0]):
        single = Reservoir(1, 1)
        feed(single, torch.zeros(2, dtype=torch.int64), key[order], tied[order], batch=1)
        assert kept_ids(single) == [[1]]


def test_classes_never_share_slots():
    # class 0 brings the 30 smallest keys; class 1 still keeps its own r, and labels come back right
    k, r = 2, 4
    labels = torch.tensor([0] * 30 + [1] * 6)
    keys = torch.cat([torch.linspace(0.01, 0.1, 30), torch.linspace(0.5, 0.9, 6)]).double()
    ids = torch.arange(36)
    reservoir = Reservoir(k, r)
    payload = feed(reservoir, labels, keys, ids, batch=36)
    slots, kept_labels, kept = reservoir.kept()
    assert kept_ids(reservoir) == [[0, 1, 2, 3], [30, 31, 32, 33]]
    assert torch.equal(kept_labels, labels[kept])
    assert ((slots // r) == kept_labels).all()  # slot c*R + j belongs to class c
    assert torch.equal(payload[slots], kept.double() + 0.5)


def test_a_class_with_fewer_samples_than_r_keeps_them_all():
    k, r = 3, 10
    labels, ids = torch.tensor([0, 0, 2, 0, 2]), torch.tensor([7, 3, 9, 5, 1])
    keys = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.2], dtype=torch.float64)
    reservoir = Reservoir(k, r)
    dest = reservoir.add(labels, keys, ids)
    assert (dest != reservoir.scratch).all() and len(set(dest.tolist())) == 5
    assert kept_ids(reservoir) == [[3, 5, 7], [], [1, 9]]  # each class in key order
    assert torch.isinf(reservoir.keys[:-1]).sum() == k * r - 5 and (reservoir.ids[:-1] == -1).sum() == k * r - 5
