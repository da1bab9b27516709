"""The columns of the tables a run stores, as data: name, dtype and meaning of each.

One source for what a column means: `tables` validates what it builds against it, `markdown` feeds
the README and the reports, `doc` the dashboard's help texts.

    validate("blocks", run.blocks)          # raises TableSchemaError naming the column
    print(markdown("channels"))
    st.caption(doc("blocks", "eta2_excess"))

Notation: N samples, K' classes with samples (classes with no samples are ignored everywhere), C
channels of the gate, S data shards, P label permutations, B histogram bins per channel. m_k is the
class-mean gate profile of class k (its C channel means), m the mean of the m_k. A constant channel
(`analysis.measures.anova`: total sum of squares within the float32 rounding of its mean, +-2
spacings) has zero specificity on every measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.errors import TableSchemaError
from analysis.measures.probe import PROBE_C
from analysis.measures.saturation import GATE_HIGH, GATE_LOW

DTYPES = ("str", "category", "bool", "int32", "int64", "float64")


@dataclass(frozen=True)
class Column:
    """One column of a table: its name, its dtype (one of DTYPES) and what it means."""

    name: str
    dtype: str
    doc: str

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise TableSchemaError(f"column {self.name!r} has dtype {self.dtype!r}; use one of {', '.join(DTYPES)}.")


_BLOCK = Column("block", "str", "Gate name, e.g. SE_3_4.")
_DEPTH = Column("depth", "int64", "1-based forward position of the gate.")
_CHANNELS = Column("channels", "int64", "Channels of the gate (C).")
_SHARE = (
    "Exact: GateStats counts the values past the threshold. "
    "NaN without samples."
)
_JACKKNIFE = (
    "95% delete-one-shard jackknife interval: estimate +- t SE with SE^2 = (S-1)/S sum_s (theta_s - "
    "mean theta)^2 over the S leave-one-shard-out estimates theta_s and t the 97.5% quantile of "
    "Student's t with S-1 degrees of freedom (2.36 for 8 shards). NaN when S < 2 or some "
    "leave-one-out keeps fewer than 2 samples."
)
_PROBE = (
    f"The probe: multinomial L2 logistic regression (C = {PROBE_C}, as scikit-learn's) on the reservoir "
    "gate vectors, standardised with training-fold statistics, stratified 5-fold, fit by full-batch "
    "L-BFGS on the statistics' device. With more than `probe_max_classes` (default 128) classes in the "
    "reservoir it uses a seeded random subset of that many classes, and the chance level is the "
    "subset's (see `analysis.measures.probe.probe` for why). A class of a single vector is left out (it "
    "would be tested but never trained on). NaN when fewer than 2 classes remain or fewer samples than folds."
)
_SHAPE = (
    "Divided by gate_std, the SD of all the block's gate values (across channels, classes and images; "
    "before issue 23: the SD of m across channels, which a nearly flat m made noisy): a share of what "
    "the block's gates do. 0 when the class curves are identical (constant gates), NaN when K' < 2."
)
_NAN_CONTROL = "NaN when the control was not collected."
_BAND = (
    "over the untrained network's control seeds (collect --control untrained --control-seeds J, "
    "RUN/untrained/seed_S/). NaN when the control was not collected."
)
_BOOTSTRAP = (
    "95% shard-bootstrap interval: R resamples of the S shards with replacement (the same for every "
    "block), the expanded percentile interval of Hesterberg 2015 (quantiles at Phi(-sqrt(S/(S-1)) t), t "
    "Student's 97.5% quantile with S-1 degrees of freedom: 0.57% and 99.43% for 8 shards). NaN when S < 2."
)
_NOTION_SHARE = (
    "Share of the draws (each a shard-bootstrap resample of the data held against one untrained seed; "
    "detectable: against chance) in which the block passes the notion's test (analysis.measures.notions; "
    "meta.json onset.notions has the rule). NaN when the notion is undetermined (e.g. no untrained control)."
)
_PROFILES = (
    "1 when K' < 2. A zero vector (cosine) or a constant profile (correlation) counts as identical "
    "to another such and as 0 to any other."
)

TABLES: dict[str, tuple[str, tuple[Column, ...]]] = {
    "channels": (
        "One row per (gate, channel), blocks in depth order.",
        (
            _BLOCK,
            _DEPTH,
            Column("channel", "int64", "Channel index within the gate."),
            Column("eta2", "float64", "Eta-squared, between-class / total sum of squares, in [0, 1]. NaN when no two "
                   "samples share a class (N <= K'), where it would be 1 whatever the gates."),
            Column(
                "eps2",
                "float64",
                "Epsilon-squared, (SS_between - (K'-1) MS_within) / SS_total: eta2 corrected for its "
                "upward bias (K'-1)/(N-1), so ~0 without a class effect and not clipped (may be slightly "
                "negative). NaN when K' < 2 or N <= K' for a non-constant channel.",
            ),
            Column(
                "class_mod",
                "float64",
                "Class modulation in gate units, sqrt(SS_between / N): the rms distance of a sample's "
                "class mean from the channel mean, i.e. how far apart the class curves are. NaN without samples.",
            ),
            Column(
                "F",
                "float64",
                "One-way ANOVA F statistic (K'-1, N-K' degrees of freedom). F = inf when every class is "
                "constant but the classes differ. NaN when the test is undefined for a non-constant "
                "channel: fewer than 2 classes, or N <= K'.",
            ),
            Column(
                "p_value",
                "float64",
                "Upper-tail p-value of F: 0 when every class is constant but the classes differ, NaN "
                "where F is NaN.",
            ),
            Column(
                "significant",
                "bool",
                "Benjamini-Hochberg FDR at q (default 0.05) within the block over its channels' "
                "p-values; an undefined p-value counts as 1.",
            ),
            Column(
                "selectivity",
                "float64",
                "Class selectivity index of Morcos et al. 2018, (mu_max - mu_rest) / (mu_max + mu_rest), "
                "mu_max the largest class mean, mu_rest the mean of the other class means; 0 when the "
                "denominator is 0 or K' < 2. In [0, 1] for gates in [0, 1].",
            ),
            Column(
                "mi_bits",
                "float64",
                "Mutual information between class and the binned gate, in bits, from the histogram over "
                "the channel's own bins (B bins, equiprobable on the calibration sample, plus an underflow and an "
                "overflow bin: fixed bins on [0, 1] cannot resolve gates that vary by 1e-4 around 0.5, and "
                "equal-width bins leave a skewed channel's bulk in one bin), each entropy with the "
                "Miller-Madow correction H + (m - 1) / (2N) nats, m its number of non-empty cells. The "
                "correction removes the first-order upward bias of the plug-in estimate, so a channel "
                "without class information scatters around 0 and may be slightly negative: it is not "
                "clipped, so that block means stay unbiased. Exactly 0 for a gate whose values all lie "
                "in one bin.",
            ),
            Column("preferred_class", "int64", "The class with the largest mean."),
            Column("preferred_class_name", "str", "Name of the class with the largest mean."),
            Column("mean", "float64", "Mean over all N samples (NaN without samples)."),
            Column("std", "float64", "Population standard deviation over all N samples (NaN without samples)."),
            Column("sat_high", "float64", f"Share of the channel's values >= {GATE_HIGH}. {_SHARE}"),
            Column("sat_low", "float64", f"Share of the channel's values <= {GATE_LOW}. {_SHARE}"),
        ),
    ),
    "blocks": (
        "One row per gate in depth order.",
        (
            _BLOCK,
            _DEPTH,
            Column("rel_depth", "float64", "depth / number of gates."),
            Column("path", "str", "Module path of the hooked gate."),
            _CHANNELS,
            Column("samples", "int64", "Samples seen (N)."),
            Column("classes", "int64", "Classes with samples (K')."),
            Column("eta2_mean", "float64", "Mean eta2 over channels."),
            Column(
                "eta2_null",
                "float64",
                "(K'-1)/(N-1), the expectation of eta2_mean without any class effect (0 when K' < 2, NaN when "
                "N <= K').",
            ),
            Column("eta2_excess", "float64", "eta2_mean - eta2_null."),
            Column("eta2_ci_low", "float64", f"Lower end of the {_JACKKNIFE}"),
            Column("eta2_ci_high", "float64", f"Upper end of the {_JACKKNIFE}"),
            Column("eps2_mean", "float64", "Mean eps2 over channels (bias-corrected effect size)."),
            Column("class_mod", "float64", "Mean class_mod over channels, in gate units."),
            Column(
                "class_mod_perm_q95",
                "float64",
                "The 95th percentile of class_mod over the P pseudo-labellings (linear interpolation): what "
                "sampling noise alone reaches, the magnitude notion's null. NaN without permutation tables.",
            ),
            Column("class_mod_untrained", "float64", f"The largest class_mod of the same block {_BAND}"),
            Column("class_mod_untrained_low", "float64", f"The smallest class_mod of the same block {_BAND}"),
            Column(
                "eta2_perm",
                "float64",
                "Label-permutation null: eta2_mean of the same gates under each of P fixed pseudo-labellings "
                "of the samples (a hash of the sample id; P = 99 by default), averaged over the P. NaN "
                "without permutation tables.",
            ),
            Column(
                "perm_p",
                "float64",
                "(1 + #permutations with eta2_mean >= the observed) / (1 + P): the permutation p-value. Its "
                "floor is 1/(1+P) (0.01 with the default 99): a value at the floor says p <= 1/(1+P), no "
                "finer; a smaller p needs more permutations. NaN without permutation tables.",
            ),
            Column(
                "eta2_untrained",
                "float64",
                f"The largest eta2_mean of the same block {_BAND}",
            ),
            Column("eta2_untrained_low", "float64", f"The smallest eta2_mean of the same block {_BAND}"),
            Column(
                "eta2_z",
                "float64",
                "eta2_mean of the squeezed input z of the block (the channel means of its input): the class "
                f"information entering the excitation, beside eta2_mean leaving it. {_NAN_CONTROL}",
            ),
            Column(
                "profile_sep",
                "float64",
                f"rms over classes and channels of m_k - m: how far apart the class curves are. {_SHAPE}",
            ),
            Column(
                "shape_sep",
                "float64",
                "profile_sep after removing from each m_k - m its least-squares fit on [1, m - mean(m)], "
                "the part a per-class shift and scale of the common curve explains (curves differing only "
                f"so are class-agnostic in the SE paper's sense). {_SHAPE}",
            ),
            Column("shape_sep_ci_low", "float64", f"Lower end of shape_sep's {_BOOTSTRAP}"),
            Column("shape_sep_ci_high", "float64", f"Upper end of shape_sep's {_BOOTSTRAP}"),
            Column(
                "affine_r2",
                "float64",
                "1 - |residual|^2 / |m_k - m|^2 over classes and channels: the share of the class curves' "
                "differences that a per-class shift and scale of the common curve explains (1: copies of "
                "one curve; also when the class curves are identical). NaN when K' < 2.",
            ),
            Column(
                "shape_sep_perm",
                "float64",
                "shape_sep of the permutation null's class means, averaged over the P pseudo-labellings: "
                "what sampling noise alone gives. NaN without permutation tables.",
            ),
            Column(
                "shape_sep_perm_max",
                "float64",
                "The largest shape_sep over the P pseudo-labellings (it grows with P). NaN without "
                "permutation tables.",
            ),
            Column(
                "shape_sep_perm_q95",
                "float64",
                "The 95th percentile of shape_sep over the P pseudo-labellings (linear interpolation): the "
                "shape notion's null. NaN without permutation tables.",
            ),
            Column(
                "shape_sep_untrained",
                "float64",
                f"The largest shape_sep of the same block {_BAND}",
            ),
            Column("shape_sep_untrained_low", "float64", f"The smallest shape_sep of the same block {_BAND}"),
            Column("frac_significant", "float64", "Share of channels significant after BH-FDR at q."),
            Column("selectivity_median", "float64", "Median channel selectivity."),
            Column("mi_bits_mean", "float64", "Mean channel MI in bits."),
            Column(
                "class_cosine_mean",
                "float64",
                "Mean pairwise cosine similarity of the K' class-mean gate vectors (the paper's "
                f"\"curves overlap\"). {_PROFILES}",
            ),
            Column(
                "class_corr_mean",
                "float64",
                "Mean pairwise Pearson correlation across channels of the K' class-mean gate vectors, "
                f"which ignores the shared positive offset of the gates and so discriminates better. {_PROFILES}",
            ),
            Column("probe_acc", "float64", f"Cross-validated accuracy of the probe. {_PROBE}"),
            Column(
                "probe_chance",
                "float64",
                "Accuracy of always predicting the most frequent class of the probe set "
                f"(fold-wise majorities are biased low under stratified folds). {_PROBE}",
            ),
            Column(
                "probe_p",
                "float64",
                f"One-sided binomial p-value of the probe's correct predictions against probe_chance. {_PROBE}",
            ),
            Column(
                "probe_perm",
                "float64",
                "Accuracy of the same probe on the same vectors with their labels dealt out again at "
                "random (in an order seeded by a hash of the sample id, so each class keeps its count): "
                "the control task of Hewitt & Liang 2019.",
            ),
            Column(
                "probe_perm_chance",
                "float64",
                "Chance level of probe_perm: the most frequent class's share of its labels in the probe "
                "set (equal to probe_chance, since the control task keeps every class's count).",
            ),
            Column("probe_selectivity", "float64", "probe_acc - probe_perm (Hewitt & Liang's selectivity)."),
            Column("probe_per_class", "float64", "Probe vectors per class (probe set size / classes in it)."),
            Column(
                "probe_ncm",
                "float64",
                "Accuracy of the nearest-class-mean classifier on the same folds and standardisation (the "
                "simplest probe, kept for comparison; it ignores the correlation of channels within a class).",
            ),
            Column(
                "probe_untrained",
                "float64",
                "The largest probe_acc of the same block over the untrained network's control seeds; NaN "
                "when the control was not collected or its passes kept no reservoir.",
            ),
            Column("probe_z", "float64", f"probe_acc on the squeezed inputs z of the block. {_NAN_CONTROL}"),
            Column(
                "sat_high",
                "float64",
                f"The channels' mean sat_high: the block's share of gate values >= {GATE_HIGH} (every "
                "channel sees the same samples). NaN without samples.",
            ),
            Column(
                "sat_low",
                "float64",
                f"The channels' mean sat_low: the block's share of gate values <= {GATE_LOW}. NaN without samples.",
            ),
            Column(
                "gate_mean",
                "float64",
                "Mean of all N*C gate values of the block, pooled from the channels' means (NaN without samples).",
            ),
            Column(
                "gate_std",
                "float64",
                "Population std of all N*C gate values of the block, pooled from the channels' means and "
                "stds (NaN without samples).",
            ),
            Column("detectable_share", "float64", f"Detectable: {_NOTION_SHARE}"),
            Column("magnitude_share", "float64", f"Magnitude: {_NOTION_SHARE}"),
            Column("shape_share", "float64", f"Shape: {_NOTION_SHARE}"),
        ),
    ),
    "class_means": (
        "Long form, one row per (gate, class with samples, channel).",
        (
            Column("block", "category", "Gate name."),
            Column("class", "int32", "Class index."),
            Column("class_name", "category", "Class name."),
            Column("channel", "int32", "Channel index within the gate."),
            Column("mean", "float64", "Mean of the gate over the class's samples."),
            Column("std", "float64", "Population standard deviation of the gate within the class."),
            Column("count", "int64", "Samples of the class."),
        ),
    ),
}
VIEW_TABLES: dict[str, tuple[str, tuple[Column, ...]]] = {  # tables the pages compute from a run, not stored
    "class_blocks": (
        "Computed for the dashboard's Classes page (not stored): where one class drives the gates, one row per "
        "block in depth order.",
        (
            _BLOCK,
            _DEPTH,
            _CHANNELS,
            Column("preferring", "int64", "Channels whose preferred class (largest class mean) is this class."),
            Column("share", "float64", "preferring / channels."),
            Column("chance", "float64", "1/K', the share expected if every class were preferred equally often."),
        ),
    ),
    "class_channels": (
        "Computed for the dashboard's Classes page (not stored): the channels this class opens most, over all "
        "blocks, among the channels that prefer it (a channel another class opens even more is that class's, and "
        "listed there), by lift.",
        (
            _BLOCK,
            Column("channel", "int64", "Channel index within the gate."),
            Column("class_mean", "float64", "Mean of the gate over this class's samples."),
            Column("others_mean", "float64", "Mean of the other classes' means (each class weighs the same)."),
            Column("lift", "float64", "class_mean - others_mean: how much more this class opens the channel, in gate "
                                      "units."),
            Column("eta2", "float64", "The channel's eta2 (see channels)."),
            Column("selectivity", "float64", "The channel's class selectivity index (see channels)."),
        ),
    ),
}


ONSETS: dict[str, str] = {  # what each entry of meta.json's "onset" names, in one line each
    "block": "where gating becomes class-specific in shape: the first block from which shape_sep is above its "
             "controls (untrained network, permutation null) in every later block",
    "detectable": "where class information is first detectable: the first block whose eta2 is clearly above chance "
                  "(an effect size on eta2, not a shape)",
}


def columns(table: str) -> tuple[Column, ...]:
    """The columns of `table` (stored, or computed for the pages) in their order; raises TableSchemaError
    for an unknown table."""
    known = TABLES | VIEW_TABLES
    if table not in known:
        raise TableSchemaError(f"no table {table!r}; tables: {', '.join(known)}.")
    return known[table][1]


def _has_dtype(series: pd.Series, dtype: str) -> bool:
    if dtype == "category":
        return isinstance(series.dtype, pd.CategoricalDtype)
    if dtype == "str":  # object before pandas 3 and after a Parquet round trip; str from pandas 3 on
        return not isinstance(series.dtype, pd.CategoricalDtype) and pd.api.types.is_string_dtype(series.dtype)
    return series.dtype == np.dtype(dtype)


def validate(table: str, df: pd.DataFrame) -> None:
    """Check that `df` has exactly the columns of `table`, each of its dtype; raises TableSchemaError
    naming the first missing, unknown or mistyped column."""
    expected = columns(table)
    names = {c.name for c in expected}
    missing = [c.name for c in expected if c.name not in df.columns]
    if missing:
        raise TableSchemaError(f"table {table!r} lacks column {missing[0]!r}.")
    extra = [str(c) for c in df.columns if c not in names]
    if extra:
        raise TableSchemaError(f"table {table!r} has column {extra[0]!r}, which its schema does not know.")
    for c in expected:
        if not _has_dtype(df[c.name], c.dtype):
            raise TableSchemaError(f"column {c.name!r} of table {table!r} is {df[c.name].dtype}, not {c.dtype}.")


def doc(table: str, column: str) -> str:
    """What `column` of `table` means (a help text); raises TableSchemaError for an unknown column."""
    for c in columns(table):
        if c.name == column:
            return c.doc
    raise TableSchemaError(f"table {table!r} has no column {column!r}.")


def markdown(table: str) -> str:
    """The schema of `table` as a Markdown section: its heading, one line about it, a column table."""
    rows = []
    for c in columns(table):
        meaning = c.doc.replace("|", "\\|")  # a bar inside a cell would end it
        rows.append(f"| `{c.name}` | {c.dtype} | {meaning} |")
    head = [f"### `{table}`", "", (TABLES | VIEW_TABLES)[table][0], "", "| column | dtype | meaning |", "|---|---|---|"]
    return "\n".join(head + rows) + "\n"
