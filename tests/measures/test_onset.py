"""The onset (first block from which a notion holds to the last block) and its certainty record."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from analysis.measures.onset import NONE, onset_index, onset_record, undetermined
from analysis.measures.tables import block_table
from analysis.testing import fakes
from analysis.testing.fakes import FakeStats, balanced_labels, planted


def brute_onset(passes: list[bool]) -> int:
    """The first i with passes[i:] all true, by trying every i; len(passes) when there is none."""
    return next((i for i in range(len(passes)) if all(passes[i:])), len(passes))


def test_onset_index_is_the_first_block_from_which_every_later_block_passes() -> None:
    patterns = np.array(list(itertools.product([False, True], repeat=5)))  # every pass pattern of 5 blocks
    assert onset_index(patterns).tolist() == [brute_onset(list(p)) for p in patterns]
    stacked = patterns.reshape(4, 8, 5)  # leading axes are draws
    assert (onset_index(stacked) == onset_index(patterns).reshape(4, 8)).all()


def test_onset_record_counts_each_block_the_draws_give() -> None:
    names = ["SE_1", "SE_2", "SE_3"]
    record = onset_record(1, np.array([1, 1, 1, 2, 3, 1, 1, 1]), names)
    assert record["status"] == "found" and record["block"] == "SE_2" and record["draws"] == 8
    assert record["certainty"] == 6 / 8 and record["shares"] == {"SE_2": 6 / 8, "SE_3": 1 / 8, NONE: 1 / 8}
    none = onset_record(3, np.array([3, 3, 2]), names)
    assert none["status"] == "none" and none["block"] is None and none["certainty"] == 2 / 3
    assert onset_record(0, np.zeros(0, dtype=np.int64), names)["certainty"] is None
    gap = undetermined("no untrained control")
    assert gap["status"] == "undetermined" and gap["block"] is None and gap["certainty"] is None and gap["shares"] == {}


@pytest.mark.parametrize("effects, expected", [((0.0, 0.0, 2.0, 3.0), "SE_3_1"), ((0.0, 0.0, 0.0, 0.0), None),
                                               ((2.0, 0.0, 2.0, 3.0), "SE_3_1")])
def test_detectable_onset_is_the_first_block_of_the_planted_run_to_the_end(effects, expected) -> None:
    """Planted class effects per block (0: none): the onset is where they start and last; a class
    effect in an early block followed by none does not count."""
    rng = np.random.default_rng(4)
    y = balanced_labels(1500, 10, rng)
    names = ["SE_2_1", "SE_2_2", "SE_3_1", "SE_3_2"]
    stats = FakeStats({n: planted(y, 10, 16, e, rng) for n, e in zip(names, effects)}, y, num_classes=10)
    from analysis.measures.notions import answer

    blocks = block_table(stats)
    record = answer(blocks, {}, None)[1]["detectable"]
    assert record["block"] == expected
    assert record["status"] == ("found" if expected else "none")


def test_depth_model_detectable_onset_and_its_certainty() -> None:
    from analysis.measures.tables import run_tables

    _, onset = run_tables(fakes.depth_model())
    detectable = onset["notions"]["detectable"]
    assert detectable["block"] == onset["detectable"] == "SE_3_1"
    assert detectable["certainty"] == 1.0 and detectable["draws"] == detectable["resamples"] > 0
