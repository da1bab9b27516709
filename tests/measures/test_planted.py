"""Planted ground truth: gates that ignore the class until a known depth, then depend on it."""

from __future__ import annotations

import torch

from analysis import collect
from analysis.measures.notions import answer
from analysis.measures.tables import block_table
from analysis.testing.nets import PlantedNet, batches, planted_data


def test_specificity_is_at_chance_before_the_planted_depth_and_far_above_after():
    x, y = planted_data(3000, seed=3)
    stats = collect(PlantedNet().eval(), batches(x, y, 250), 10, progress=False)
    blocks = block_table(stats).set_index("block")
    early, late = ["SE_2_1", "SE_2_2", "SE_2_3"], ["SE_3_1", "SE_3_2", "SE_3_3"]
    null = blocks["eta2_null"].iloc[0]
    assert null == (10 - 1) / (3000 - 1)
    for name in early:
        # mean eta2 over 16 channels of 3000 samples: within a few null-sized units of chance
        assert abs(blocks.at[name, "eta2_mean"] - null) < 3 * null, name
        assert blocks.at[name, "frac_significant"] <= 0.25, name
        assert blocks.at[name, "probe_acc"] < blocks.at[name, "probe_chance"] + 0.1, name
    for name in late:
        assert blocks.at[name, "eta2_mean"] > 0.3, name
        assert blocks.at[name, "eta2_ci_low"] > 50 * null, name
        assert blocks.at[name, "frac_significant"] > 0.8, name
        assert blocks.at[name, "probe_acc"] > 3 * blocks.at[name, "probe_chance"], name
        assert blocks.at[name, "probe_p"] < 1e-6, name
    assert detectable_onset(blocks.reset_index()) == "SE_3_1"


def test_no_onset_when_no_block_is_class_specific():
    x, y = planted_data(2000, seed=4)
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]  # labels unrelated to images
    stats = collect(PlantedNet().eval(), batches(x, y, 250), 10, progress=False)
    assert detectable_onset(block_table(stats)) is None


def detectable_onset(blocks) -> str | None:
    """The detectable notion's onset block of a blocks table (no resamples: the point answer)."""
    return answer(blocks, {}, None)[1]["detectable"]["block"]
