"""Stage 4, measures: pure functions from GateStats to tidy tables, and the onset rule.

One module per family of statistics (anova, information, testing, resampling, probe, profiles,
saturation), the onset rule (onset), the tables a run stores (tables) and their columns as data
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
    f_test,
    null_band,
)
from analysis.measures.information import mutual_information_bits
from analysis.measures.onset import (
    ONSET_MIN_EXCESS,
    ONSET_MIN_FRAC_SIGNIFICANT,
    ONSET_RULE,
    SHAPE_ONSET_MARGIN,
    SHAPE_ONSET_RULE,
    OnsetRule,
    ShapeOnsetRule,
    find_onset,
)
from analysis.measures.permutation import permutation_null, permutation_p
from analysis.measures.probe import PROBE_C, PROBE_MAX_CLASSES, Probe, fit_logistic, ncm_probe, probe, stratified_folds
from analysis.measures.profiles import mean_pairwise_cosine, profile_separation, selectivity
from analysis.measures.resampling import eta2_jackknife, jackknife_interval, shape_sep_jackknife
from analysis.measures.saturation import GATE_HIGH, GATE_LOW, SATURATED_SHARE, SATURATION_RULE, saturated
from analysis.measures.schema import Column, doc, markdown, validate
from analysis.measures.tables import block_table, channel_table, class_mean_table, run_tables
from analysis.measures.testing import benjamini_hochberg

__all__ = [
    "CONSTANT_ULPS",
    "GATE_HIGH",
    "GATE_LOW",
    "ONSET_MIN_EXCESS",
    "ONSET_MIN_FRAC_SIGNIFICANT",
    "ONSET_RULE",
    "PROBE_C",
    "PROBE_MAX_CLASSES",
    "SATURATED_SHARE",
    "SATURATION_RULE",
    "SHAPE_ONSET_MARGIN",
    "SHAPE_ONSET_RULE",
    "Anova",
    "Column",
    "OnsetRule",
    "Probe",
    "ShapeOnsetRule",
    "anova",
    "benjamini_hochberg",
    "block_table",
    "channel_table",
    "class_mean_table",
    "class_modulation",
    "constant_floor",
    "doc",
    "epsilon_squared",
    "eta2_jackknife",
    "eta2_null",
    "eta_squared",
    "f_test",
    "find_onset",
    "fit_logistic",
    "jackknife_interval",
    "markdown",
    "mean_pairwise_cosine",
    "mutual_information_bits",
    "ncm_probe",
    "null_band",
    "permutation_null",
    "permutation_p",
    "probe",
    "profile_separation",
    "run_tables",
    "saturated",
    "selectivity",
    "shape_sep_jackknife",
    "stratified_folds",
    "validate",
]
