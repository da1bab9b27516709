"""Stage 4, measures: pure functions from GateStats to tidy tables, and the answer as notions with their onsets.

One module per family of statistics (anova, information, testing, resampling, probe, profiles,
saturation), the notions of class-specific and their onsets (notions, onset), the tables a run stores (tables) and their columns as data
(schema). Inputs are CPU tensors or NumPy arrays; outputs NumPy arrays or pandas tables.

    tables, onset = run_tables(stats)
    validate("blocks", tables["blocks"])
"""

from analysis.measures.anova import (
    CONSTANT_ULPS,
    Anova,
    anova,
    class_modulation,
    constant_floor,
    epsilon_squared,
    eta2_null,
    eta_squared,
    f_p_value,
    f_statistic,
    f_test,
    null_band,
)
from analysis.measures.information import mutual_information_bits
from analysis.measures.notions import (
    NOTIONS,
    ONSET_MIN_EXCESS,
    ONSET_MIN_FRAC_SIGNIFICANT,
    Notion,
    NotionRules,
    answer,
    resample_statistics,
)
from analysis.measures.onset import onset_index, onset_record
from analysis.measures.permutation import permutation_null, permutation_p
from analysis.measures.probe import PROBE_C, PROBE_MAX_CLASSES, Probe, fit_logistic, ncm_probe, probe, stratified_folds
from analysis.measures.profiles import gate_sd, mean_pairwise_cosine, profile_separation, profile_split, selectivity
from analysis.measures.resampling import bootstrap_interval, eta2_jackknife, jackknife_interval, shard_weights
from analysis.measures.saturation import GATE_HIGH, GATE_LOW, SATURATED_SHARE, SATURATION_RULE, saturated
from analysis.measures.schema import Column, doc, markdown, validate
from analysis.measures.tables import block_table, channel_table, class_mean_table, control_statistics, run_tables
from analysis.measures.testing import benjamini_hochberg

__all__ = [
    "CONSTANT_ULPS",
    "GATE_HIGH",
    "GATE_LOW",
    "ONSET_MIN_EXCESS",
    "ONSET_MIN_FRAC_SIGNIFICANT",
    "NOTIONS",
    "PROBE_C",
    "PROBE_MAX_CLASSES",
    "SATURATED_SHARE",
    "SATURATION_RULE",
    "Anova",
    "Column",
    "Notion",
    "NotionRules",
    "Probe",
    "anova",
    "answer",
    "bootstrap_interval",
    "benjamini_hochberg",
    "block_table",
    "channel_table",
    "class_mean_table",
    "class_modulation",
    "control_statistics",
    "constant_floor",
    "doc",
    "epsilon_squared",
    "eta2_jackknife",
    "eta2_null",
    "eta_squared",
    "f_p_value",
    "f_statistic",
    "f_test",
    "fit_logistic",
    "gate_sd",
    "jackknife_interval",
    "markdown",
    "mean_pairwise_cosine",
    "mutual_information_bits",
    "ncm_probe",
    "null_band",
    "onset_index",
    "onset_record",
    "permutation_null",
    "permutation_p",
    "probe",
    "profile_separation",
    "profile_split",
    "resample_statistics",
    "run_tables",
    "saturated",
    "selectivity",
    "shard_weights",
    "stratified_folds",
    "validate",
]
