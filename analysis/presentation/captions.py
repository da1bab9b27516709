"""What each figure shows, how to read it and what a good result looks like: the one text under a
figure in the reports, the PDF, the paper page and the dashboard.

    caption("depth")        # the kinds of report.run_figures and dashboard/loaders.figure
"""

from __future__ import annotations

from analysis.measures.saturation import GATE_HIGH, GATE_LOW

CAPTIONS: dict[str, str] = {
    "depth": (
        "Left: how much of a gate's variance the class explains (eta2, averaged over the block's channels), block by "
        "block from input to output, with its 95% interval (blue band). Grey: what chance alone gives (the band holds "
        "95% of one channel's eta2 without any class effect; crosses: the same data with shuffled labels). Orange: "
        "the same network untrained; green: the squeezed input z entering the block. Right: the share of images "
        "whose class a linear classifier reads from the block's gate vectors, beside chance and the same controls. "
        "Good: the trained curve far above grey and above the untrained network. Vertical lines mark the onsets."
    ),
    "shape": (
        "How far the class curves differ beyond what a per-class shift and scale of the all-class curve explains "
        "(shape_sep), as a share of the SD of the block's gate values, block by block. Near 0: every class "
        "gets the same pattern of gates, only raised or lowered (class-agnostic in the SE paper's sense). "
        "profile_sep counts the shift and scale too. Orange: the untrained networks (band: smallest to largest over "
        "their seeds); grey crosses: the 95th percentile with shuffled labels. Good: the trained curve leaves the "
        "untrained band and stays above it; the shape onset is where it does so for good."
    ),
    "saturation": (
        f"Left: the share of gate values at or above {GATE_HIGH} (the channel passes nearly unchanged) and at or below "
        f"{GATE_LOW} (nearly silenced), per block, on a scale that fits the shares; saturated blocks act as fixed "
        "switches and can often be removed at little cost. Right: the mean gate with +- one standard deviation."
    ),
    "profiles": (
        "The SE paper's figure (its Fig. 6). Per block, top strip: the mean gate of every channel over all classes "
        "(black, on its own scale). Below: each class's mean gate minus that all-class curve (0 is the all-class "
        "curve). Lines flat at 0: the block gates every class alike. Lines that rise and fall differently from "
        "channel to channel: class-specific gating. Each panel's y axis fits its data, so compare the scales too."
    ),
    "profiles_spread": (
        "As the figure above (the SE paper's Fig. 7), each class with a band of +- one standard deviation of the gate "
        "over the class's images. Where the bands overlap widely, single images of two classes are not told apart by "
        "one channel even where their means differ; the class shows in the pattern over many channels."
    ),
    "heatmap": (
        "The block (in the report the most class-specific): one row per class, one column per channel, channels "
        "sorted by the class whose mean gate is highest (the class they prefer). Colour: the class's mean gate minus "
        "the channel's mean over all classes (red: opened more for this class, blue: less). Red blocks along the "
        "diagonal: channels that open for one class each."
    ),
    "distributions": (
        "The block's gate values pooled over its channels, one density per class (the share of "
        "values per unit of gate value). Curves that peak apart: the classes are gated differently; curves on top of "
        "each other: alike."
    ),
    "similarity": (
        "How alike two classes are gated in the block: the correlation across channels of their "
        "mean gates (1: the same pattern). The colour scale runs from the lowest value found to 1. Dark cells: classes "
        "gated differently."
    ),
    "compare": (
        "One line per run: the measure block by block, at the block names when the runs have the same blocks (epoch "
        "snapshots of one training), else at relative depth. Lines that rise with training show gating becoming "
        "class-specific as the network learns."
    ),
    "interventions": (
        "Top: the change in top-1 accuracy, in percentage points, when one block's gates are replaced (ones: SE "
        "removed; mean: the run's mean gate; class-mean: the true class's mean gate, an oracle; shuffle: another "
        "image's gates), with 95% bootstrap intervals over images. Bottom: what the statistics predict: the class "
        "share of gate variance above chance and the share of saturated gates. Good: blocks the statistics call "
        "class-agnostic or saturated cost about 0 points."
    ),
    "attributions": (
        "Left: class-specificity by depth, plain and weighted by how much each channel's gate moves the class logit "
        "(captum attributions). Right: each block's share of all attribution. A weighted curve above the plain one: "
        "the network leans on its class-specific channels."
    ),
}

TITLES: dict[str, str] = {  # a figure kind's heading
    "depth": "Class-specificity by depth", "shape": "Class-specific shape by depth",
    "profiles": "Class-mean gates per channel (the SE paper's figure)",
    "profiles_spread": "Class-mean gates with their spread", "saturation": "Saturation and gate level",
    "heatmap": "Classes x channels", "distributions": "Gate distributions per class", "similarity": "Class similarity",
    "compare": "Runs compared", "interventions": "Interventions", "attributions": "Attributions",
}
MEASURES: dict[str, str] = {  # a block-table column in words, for y labels
    "eta2_mean": "share of gate variance due to the class",
    "eta2_excess": "class share of gate variance above chance",
    "shape_sep": "class-specific shape of the gates",
    "profile_sep": "distance between the class curves",
    "probe_acc": "class read from the gates (accuracy)",
    "class_mod": "class modulation (gate units)",
    "sat_high": f"share of gates >= {GATE_HIGH}",
}


def caption(kind: str) -> str:
    """The caption of a figure kind; a kind without one is a KeyError, so that no figure ships silent."""
    return CAPTIONS[kind]
