"""Metrics against independent computations on the raw synthetic gate values they summarise."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as sps

from analysis.measures import metrics

CHANNEL_COLUMNS = [
    "block", "depth", "channel", "eta2", "F", "p_value", "significant", "selectivity", "mi_bits",
    "preferred_class", "preferred_class_name", "mean", "std", "sat_high", "sat_low",
]  # fmt: skip
BLOCK_COLUMNS = [
    "block", "depth", "rel_depth", "path", "channels", "samples", "classes", "eta2_mean",
    "eta2_null", "eta2_excess", "eta2_ci_low", "eta2_ci_high", "frac_significant",
    "selectivity_median", "mi_bits_mean", "class_cosine_mean", "class_corr_mean", "probe_acc",
    "probe_chance", "probe_p", "sat_high", "sat_low", "gate_mean", "gate_std",
]  # fmt: skip


@dataclass(frozen=True)
class FakeGate:
    name: str
    depth: int
    path: str
    channels: int


class FakeStats:
    """GateStats' reading interface, computed here from raw gate values kept in memory.

    blocks: name -> values [N, C] in [0, 1] (listed in forward order); labels [N]. Samples go to
    shards round-robin after a seeded shuffle; the reservoir keeps the first R samples of each class.
    """

    def __init__(
        self,
        blocks: dict[str, np.ndarray],
        labels: np.ndarray,
        num_classes: int,
        *,
        shards: int = 8,
        bins: int = 20,
        reservoir: int = 16,
        seed: int = 0,
    ) -> None:
        self.values = {k: np.asarray(v, dtype=np.float32) for k, v in blocks.items()}
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes
        self.class_names = [f"class {k}" for k in range(num_classes)]
        self.gates = [FakeGate(n, i + 1, f"net.{n}", v.shape[1]) for i, (n, v) in enumerate(self.values.items())]
        n = self.labels.size
        self.shard = np.random.default_rng(seed).permutation(n) % shards
        self.shards, self.bins, self.keep = shards, bins, reservoir

    def moments(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v = self.values[name].astype(np.float64)
        s, k, c = self.shards, self.num_classes, v.shape[1]
        group = self.shard * k + self.labels
        count = np.bincount(group, minlength=s * k).reshape(s, k)
        total, total_sq = np.zeros((s * k, c)), np.zeros((s * k, c))
        np.add.at(total, group, v)
        np.add.at(total_sq, group, v * v)
        return tuple(torch.from_numpy(a) for a in (count, total.reshape(s, k, c), total_sq.reshape(s, k, c)))

    def histogram(self, name: str) -> torch.Tensor:
        v = self.values[name].astype(np.float64)
        b = np.minimum(np.floor(v * self.bins).astype(np.int64), self.bins - 1)  # last bin holds 1.0
        k, c = self.num_classes, v.shape[1]
        flat = (self.labels[:, None] * c + np.arange(c)) * self.bins + b
        return torch.from_numpy(np.bincount(flat.ravel(), minlength=k * c * self.bins).reshape(k, c, self.bins))

    def reservoir(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids = np.concatenate([np.flatnonzero(self.labels == k)[: self.keep] for k in range(self.num_classes)])
        return torch.from_numpy(self.values[name][ids]), torch.from_numpy(self.labels[ids]), torch.from_numpy(ids)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def balanced_labels(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.arange(n) % k)


def planted(labels: np.ndarray, k: int, c: int, effect: float, rng: np.random.Generator) -> np.ndarray:
    """Gates sigmoid(base + effect * pattern[class] + noise): a per-channel baseline shared by all
    classes, and a class-specific part in proportion to `effect`."""
    base, pattern = rng.normal(size=c), rng.normal(size=(k, c))
    return sigmoid(base + effect * pattern[labels] + 0.5 * rng.normal(size=(labels.size, c)))


def raw_eta2(v: np.ndarray, y: np.ndarray) -> float:
    grand = v.mean()
    ss_t = ((v - grand) ** 2).sum()
    ss_b = sum((y == k).sum() * (v[y == k].mean() - grand) ** 2 for k in np.unique(y))
    return ss_b / ss_t


# ------------------------------------------------------------------------- per channel metrics


@pytest.fixture(scope="module")
def mixed() -> FakeStats:
    """Unbalanced classes (class 4 has no samples), channels with graded class effects."""
    rng = np.random.default_rng(1)
    y = rng.choice(4, size=900, p=[0.4, 0.3, 0.2, 0.1])
    v = planted(y, 5, 6, 0.0, rng)
    v[:, :3] = planted(y, 5, 3, 0.3, rng)  # weak effects in the first three channels
    return FakeStats({"SE_1": v, "SE_2": planted(y, 5, 4, 1.0, rng)}, y, num_classes=5, shards=4)


def test_channel_table_has_every_column_and_one_row_per_channel(mixed: FakeStats) -> None:
    ch = metrics.channel_table(mixed)
    assert list(ch.columns) == CHANNEL_COLUMNS
    assert ch["block"].tolist() == ["SE_1"] * 6 + ["SE_2"] * 4
    assert ch["channel"].tolist() == list(range(6)) + list(range(4))
    assert ch["depth"].tolist() == [1] * 6 + [2] * 4
    assert ch["significant"].dtype == bool and ch["preferred_class"].dtype == np.int64


def test_eta2_f_and_p_match_scipy_one_way_anova_on_raw_samples(mixed: FakeStats) -> None:
    ch = metrics.channel_table(mixed).set_index(["block", "channel"])
    y = mixed.labels
    for name, v in mixed.values.items():
        v = v.astype(np.float64)
        for c in range(v.shape[1]):
            groups = [v[y == k, c] for k in range(4)]  # the empty class 4 is ignored
            f, p = sps.f_oneway(*groups)
            row = ch.loc[(name, c)]
            assert row["eta2"] == pytest.approx(raw_eta2(v[:, c], y), rel=1e-9)
            assert row["F"] == pytest.approx(f, rel=1e-9)
            assert row["p_value"] == pytest.approx(p, rel=1e-6, abs=1e-300)
            assert row["mean"] == pytest.approx(v[:, c].mean(), rel=1e-12)
            assert row["std"] == pytest.approx(v[:, c].std(), rel=1e-9)


def test_selectivity_and_preferred_class_match_a_direct_computation(mixed: FakeStats) -> None:
    ch = metrics.channel_table(mixed).set_index(["block", "channel"])
    y = mixed.labels
    for name, v in mixed.values.items():
        means = np.stack([v[y == k].astype(np.float64).mean(0) for k in range(4)])  # [K', C]
        for c in range(v.shape[1]):
            order = np.sort(means[:, c])
            mu_max, mu_rest = order[-1], order[:-1].mean()
            row = ch.loc[(name, c)]
            assert row["selectivity"] == pytest.approx((mu_max - mu_rest) / (mu_max + mu_rest), rel=1e-9)
            assert row["preferred_class"] == np.argmax(means[:, c])
            assert row["preferred_class_name"] == f"class {np.argmax(means[:, c])}"


def test_mutual_information_matches_plug_in_entropies_with_miller_madow(mixed: FakeStats) -> None:
    ch = metrics.channel_table(mixed).set_index(["block", "channel"])
    y, b = mixed.labels, mixed.bins

    def entropy_mm(counts: np.ndarray) -> float:
        counts = counts[counts > 0].astype(np.float64)
        p = counts / counts.sum()
        return float(-(p * np.log(p)).sum() + (counts.size - 1) / (2 * counts.sum()))

    for name, v in mixed.values.items():
        for c in range(v.shape[1]):
            joint, _, _ = np.histogram2d(y, v[:, c], bins=[np.arange(6) - 0.5, np.linspace(0, 1, b + 1)])
            mi = entropy_mm(joint.sum(0)) + entropy_mm(joint.sum(1)) - entropy_mm(joint.ravel())
            assert ch.loc[(name, c), "mi_bits"] == pytest.approx(mi / math.log(2), rel=1e-9, abs=1e-12)
    assert ch.loc["SE_2", "mi_bits"].min() > 0.2  # strong class effect: clearly informative


def test_significance_is_benjamini_hochberg_within_each_block(mixed: FakeStats) -> None:
    for q in (0.01, 0.05, 0.2):
        ch = metrics.channel_table(mixed, q=q)
        for _, block in ch.groupby("block"):
            expected = sps.false_discovery_control(block["p_value"].to_numpy()) <= q
            assert block["significant"].tolist() == expected.tolist()


def test_benjamini_hochberg_matches_scipy_and_never_rejects_undefined_tests() -> None:
    rng = np.random.default_rng(2)
    p = np.concatenate([rng.uniform(size=300), rng.uniform(0, 1e-3, size=40)])
    for q in (0.01, 0.05, 0.1):
        assert (metrics.benjamini_hochberg(p, q) == (sps.false_discovery_control(p) <= q)).all()
    with_nan = np.array([1e-6, np.nan, 0.5, 2e-6])
    assert metrics.benjamini_hochberg(with_nan, 0.05).tolist() == [True, False, False, True]


def test_f_is_infinite_when_every_class_is_constant_but_classes_differ() -> None:
    y = np.repeat([0, 1, 2], 333)
    v = np.array([0.123456789, 0.654321, 0.987654321])[y][:, None]  # sumsq - sum^2 / n: rounding noise
    ch = metrics.channel_table(FakeStats({"SE_1": v}, y, 3))
    assert ch.loc[0, "eta2"] == 1.0
    assert ch.loc[0, "F"] == math.inf and ch.loc[0, "p_value"] == 0.0
    assert ch.loc[0, "significant"]


# ------------------------------------------------------------------------- constant gates


@pytest.fixture(scope="module")
def constant() -> FakeStats:
    rng = np.random.default_rng(3)
    y = balanced_labels(600, 3, rng)
    return FakeStats(
        {"SE_1": np.full((600, 5), 0.7), "SE_2": np.ones((600, 4)), "SE_3": np.c_[np.full(600, 0.7), np.ones(600)]},
        y,
        num_classes=3,
    )


def test_constant_gates_have_zero_specificity_and_no_nan(constant: FakeStats) -> None:
    ch = metrics.channel_table(constant)
    assert (ch["eta2"] == 0).all() and (ch["F"] == 0).all() and (ch["p_value"] == 1).all()
    assert (ch["mi_bits"] == 0).all() and (ch["selectivity"] == 0).all() and (ch["std"] == 0).all()
    assert not ch["significant"].any() and (ch["preferred_class"] == 0).all()
    assert not ch.isna().any().any()
    blocks = metrics.block_table(constant).set_index("block")
    assert not blocks.isna().any().any()
    assert (blocks[["eta2_mean", "eta2_ci_low", "eta2_ci_high", "frac_significant", "mi_bits_mean"]] == 0).all().all()
    assert blocks["class_corr_mean"].tolist() == pytest.approx([1, 1, 1])
    assert blocks["class_cosine_mean"].tolist() == pytest.approx([1, 1, 1])
    assert blocks["sat_high"].tolist() == [0.0, 1.0, 0.5] and (blocks["sat_low"] == 0).all()
    assert blocks["gate_mean"].tolist() == pytest.approx([0.7, 1.0, 0.85])
    assert blocks["gate_std"].tolist() == pytest.approx([0.0, 0.0, 0.15])


def test_functional_core_gives_exact_zeros_for_a_constant_gate() -> None:
    count = torch.tensor([[10, 20, 5], [12, 18, 7]])
    total = count[:, :, None].double() * torch.full((1, 1, 4), 0.7, dtype=torch.float64)
    a = metrics.anova(count.sum(0), total.sum(0), (total * 0.7).sum(0))
    assert a.constant.all() and (metrics.eta_squared(a) == 0).all()
    f, p = metrics.f_test(a)
    assert (f == 0).all() and (p == 1).all()
    hist = torch.zeros(3, 4, 20, dtype=torch.int64)
    hist[:, :, 14] = count.sum(0)[:, None]
    assert (metrics.mutual_information_bits(hist) == 0).all()


# ------------------------------------------------------------------------- blocks and onset


@pytest.fixture(scope="module")
def depth_model() -> FakeStats:
    """Four blocks: no class effect in the first two, a strong one in the last two."""
    rng = np.random.default_rng(4)
    y = balanced_labels(2000, 10, rng)
    blocks = {
        "SE_2_1": planted(y, 10, 24, 0.0, rng),
        "SE_2_2": planted(y, 10, 24, 0.0, rng),
        "SE_3_1": planted(y, 10, 32, 2.0, rng),
        "SE_3_2": planted(y, 10, 32, 3.0, rng),
    }
    return FakeStats(blocks, y, num_classes=10, reservoir=30)


def test_block_table_columns_bookkeeping_and_moments(depth_model: FakeStats) -> None:
    blocks = metrics.block_table(depth_model)
    assert list(blocks.columns) == BLOCK_COLUMNS
    assert blocks["block"].tolist() == ["SE_2_1", "SE_2_2", "SE_3_1", "SE_3_2"]
    assert blocks["rel_depth"].tolist() == [0.25, 0.5, 0.75, 1.0]
    assert blocks["channels"].tolist() == [24, 24, 32, 32]
    assert (blocks["samples"] == 2000).all() and (blocks["classes"] == 10).all()
    assert blocks["path"].tolist() == [f"net.{n}" for n in blocks["block"]]
    for _, row in blocks.iterrows():
        v = depth_model.values[row["block"]].astype(np.float64)
        assert row["gate_mean"] == pytest.approx(v.mean(), rel=1e-9)
        assert row["gate_std"] == pytest.approx(v.std(), rel=1e-9)
        assert row["sat_high"] == pytest.approx((v >= 0.9).mean())  # 0.9 and 0.1 are bin edges
        assert row["sat_low"] == pytest.approx((v < 0.1).mean())


def test_block_table_reuses_a_channel_table_and_redoes_significance_at_its_q(depth_model: FakeStats) -> None:
    channels = metrics.channel_table(depth_model)
    assert metrics.block_table(depth_model, channels=channels).equals(metrics.block_table(depth_model))
    loose = metrics.block_table(depth_model, q=0.5, channels=channels)
    strict = metrics.block_table(depth_model, q=0.5)
    assert loose["frac_significant"].tolist() == strict["frac_significant"].tolist()


def test_planted_blocks_are_specific_and_null_blocks_sit_at_chance(depth_model: FakeStats) -> None:
    blocks = metrics.block_table(depth_model).set_index("block")
    null = (10 - 1) / (2000 - 1)
    assert (blocks["eta2_null"] == null).all()
    for name in ["SE_2_1", "SE_2_2"]:
        row = blocks.loc[name]
        se = (row["eta2_ci_high"] - row["eta2_ci_low"]) / (2 * 1.96)
        assert abs(row["eta2_mean"] - null) < 4 * se, name
        assert row["eta2_ci_low"] < null < row["eta2_ci_high"], name
        assert row["frac_significant"] <= 0.1, name
        assert row["probe_acc"] < row["probe_chance"] + 0.08 and row["probe_p"] > 0.001, name
        assert abs(row["mi_bits_mean"]) < 0.01, name
        assert row["class_corr_mean"] > 0.9, name  # the class-mean curves overlap
    for name in ["SE_3_1", "SE_3_2"]:
        row = blocks.loc[name]
        assert row["eta2_mean"] > 0.6 and row["eta2_ci_low"] > 50 * null, name
        assert row["frac_significant"] == 1.0, name
        assert row["probe_acc"] > 0.9 and row["probe_p"] < 1e-50, name
        assert row["mi_bits_mean"] > 0.5, name
        assert row["class_corr_mean"] < 0.5, name
    ch = metrics.channel_table(depth_model)
    assert ch.loc[ch["block"] == "SE_3_2", "eta2"].min() > 0.8


def test_onset_is_the_first_planted_block_and_none_without_class_effects(depth_model: FakeStats) -> None:
    assert metrics.find_onset(metrics.block_table(depth_model)) == "SE_3_1"
    rng = np.random.default_rng(5)
    y = balanced_labels(1500, 10, rng)
    flat = FakeStats({f"SE_{i}": planted(y, 10, 16, 0.0, rng) for i in range(1, 5)}, y, num_classes=10)
    assert metrics.find_onset(metrics.block_table(flat)) is None


def test_onset_rule_uses_the_interval_falls_back_to_the_point_excess_and_needs_breadth() -> None:
    blocks = pd.DataFrame(
        {
            "block": ["a", "b", "c", "d"],
            "depth": [4, 1, 2, 3],  # not in depth order on purpose
            "eta2_null": [0.01] * 4,
            "eta2_excess": [0.5, 0.3, 0.3, 0.3],
            "eta2_ci_low": [0.4, 0.05, np.nan, 0.3],
            "frac_significant": [1.0, 1.0, 0.4, 1.0],
        }
    )
    assert metrics.find_onset(blocks) == "d"  # b: interval too low; c: too few channels
    assert metrics.find_onset(blocks, rule="point") == "b"
    assert metrics.find_onset(blocks, min_frac_significant=0.3) == "c"  # c's NaN interval -> excess
    assert metrics.find_onset(blocks, min_excess=0.45) is None
    assert metrics.OnsetRule(min_excess=0.35).onset(blocks) == "a"
    with pytest.raises(ValueError, match="unknown onset rule"):
        metrics.find_onset(blocks, rule="median")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- jackknife


def gaussian_moments(n: int, shards: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Moments of 4 channels of N(mu_class, 1) with 4 equiprobable classes; population eta2."""
    rng = np.random.default_rng(seed)
    mu = np.array([0.0, 0.3, 0.6, 0.9])
    y = rng.integers(0, 4, size=n)
    v = mu[y][:, None] + rng.normal(size=(n, 4))
    group = (np.arange(n) % shards) * 4 + y
    count = np.bincount(group, minlength=shards * 4).reshape(shards, 4)
    total, total_sq = np.zeros((shards * 4, 4)), np.zeros((shards * 4, 4))
    np.add.at(total, group, v)
    np.add.at(total_sq, group, v * v)
    return count, total.reshape(shards, 4, 4), total_sq.reshape(shards, 4, 4), mu.var() / (mu.var() + 1)


def test_jackknife_interval_covers_the_population_eta2_and_shrinks_with_samples() -> None:
    hits = 0
    for seed in range(40):
        count, total, total_sq, truth = gaussian_moments(600, 8, seed)
        low, high = metrics.eta2_jackknife(count, total, total_sq)
        hits += low <= truth <= high
    assert hits >= 32  # nominal 95%; 8 shards and the finite-sample bias cost a little
    se = {}
    for n in (400, 6400):
        estimates, halves = [], []
        for seed in range(100):
            count, total, total_sq, _ = gaussian_moments(n, 8, 1000 + seed)
            estimates.append(metrics.eta_squared(metrics.anova(count.sum(0), total.sum(0), total_sq.sum(0))).mean())
            low, high = metrics.eta2_jackknife(*map(torch.from_numpy, (count, total, total_sq)))
            halves.append((high - low) / 2 / 1.959963984540054)
        se[n] = np.mean(halves)
        assert se[n] == pytest.approx(np.std(estimates), rel=0.2)  # the SE is the estimate's spread
    assert se[400] > 3 * se[6400]  # ~ sqrt(16) = 4


def test_jackknife_is_centred_on_the_all_data_estimate_and_nan_without_shards() -> None:
    count, total, total_sq, _ = gaussian_moments(800, 8, 7)
    low, high = metrics.eta2_jackknife(count, total, total_sq)
    a = metrics.anova(count.sum(0), total.sum(0), total_sq.sum(0))
    assert (low + high) / 2 == pytest.approx(metrics.eta_squared(a).mean(), rel=1e-12)
    thetas = []
    for s in range(8):  # recompute each leave-one-shard-out estimate from scratch
        kept = [np.delete(a, s, axis=0).sum(0) for a in (count, total, total_sq)]
        thetas.append(metrics.eta_squared(metrics.anova(*kept)).mean())
    se = math.sqrt(7 / 8 * ((np.array(thetas) - np.mean(thetas)) ** 2).sum())
    assert (high - low) / 2 == pytest.approx(1.959963984540054 * se, rel=1e-6)
    assert all(math.isnan(x) for x in metrics.eta2_jackknife(count[:1], total[:1], total_sq[:1]))


# ------------------------------------------------------------------------- other functions


def test_probe_separates_planted_classes_is_deterministic_and_subsamples_classes() -> None:
    rng = np.random.default_rng(6)
    y = balanced_labels(400, 8, rng)
    x = planted(y, 8, 20, 3.0, rng).astype(np.float32)
    first = metrics.probe(x, y, folds=5, seed=1)
    assert first == metrics.probe(torch.from_numpy(x), torch.from_numpy(y), folds=5, seed=1)
    assert first.accuracy > 0.95 and first.chance == pytest.approx(1 / 8, abs=0.02) and first.p_value < 1e-100
    sub = metrics.probe(x, y, folds=5, seed=1, max_classes=4)
    assert sub.chance == pytest.approx(1 / 4, abs=0.03) and sub.accuracy > 0.95
    noise = metrics.probe(rng.uniform(size=(400, 20)).astype(np.float32), y, folds=5)
    assert abs(noise.accuracy - noise.chance) < 0.08 and noise.p_value > 0.001
    assert all(math.isnan(v) for v in metrics.probe(x, np.zeros(400, dtype=np.int64)))
    assert all(math.isnan(v) for v in metrics.probe(x[:3], y[:3], folds=5))


def test_stratified_folds_deal_each_class_evenly() -> None:
    y = np.repeat(np.arange(3), [10, 7, 5])
    fold = metrics.stratified_folds(y, 5, seed=0)
    for k in range(3):
        sizes = np.bincount(fold[y == k], minlength=5)
        assert sizes.max() - sizes.min() <= 1


def test_saturation_is_exact_on_bin_edges_and_linear_inside_a_bin() -> None:
    counts = np.array([3, 1, 0, 0, 0, 0, 0, 0, 2, 4])  # B = 10: 0.1 and 0.9 are edges
    high, low = metrics.saturation(counts)
    assert (high, low) == (0.4, 0.3)
    counts = np.array([4, 0, 0, 0, 0, 0, 0, 6])  # B = 8: 0.1 and 0.9 fall inside bins 0 and 7
    high, low = metrics.saturation(counts)
    assert high == pytest.approx(6 * (1 - 0.9) / (1 / 8) / 10)
    assert low == pytest.approx(4 * 0.1 / (1 / 8) / 10)
    assert all(math.isnan(v) for v in metrics.saturation(np.zeros(20)))


def test_mean_pairwise_cosine_and_correlation_match_all_pairs() -> None:
    rng = np.random.default_rng(8)
    rows = rng.uniform(size=(6, 9))
    pairs = [(i, j) for i in range(6) for j in range(6) if i != j]
    cos = np.mean([rows[i] @ rows[j] / np.linalg.norm(rows[i]) / np.linalg.norm(rows[j]) for i, j in pairs])
    corr = np.mean([np.corrcoef(rows[i], rows[j])[0, 1] for i, j in pairs])
    assert metrics.mean_pairwise_cosine(rows) == pytest.approx(cos, rel=1e-12)
    assert metrics.mean_pairwise_cosine(rows, centre=True) == pytest.approx(corr, rel=1e-12)
    flat = np.vstack([rows[:2], np.full((2, 9), 0.3)])  # two constant profiles: identical, 0 to others
    pair_corr = np.corrcoef(rows[0], rows[1])[0, 1]
    assert metrics.mean_pairwise_cosine(flat, centre=True) == pytest.approx((2 * pair_corr + 2) / 12)
    assert metrics.mean_pairwise_cosine(rows[:1]) == 1.0


def test_single_class_gives_documented_nans_only() -> None:
    y = np.zeros(200, dtype=np.int64)
    v = np.random.default_rng(9).uniform(size=(200, 3))
    one = FakeStats({"SE_1": v}, y, num_classes=2)
    ch = metrics.channel_table(one)
    assert ch["F"].isna().all() and ch["p_value"].isna().all() and not ch["significant"].any()
    assert (ch["eta2"] == 0).all() and (ch["selectivity"] == 0).all() and (ch["mi_bits"] == 0).all()
    blocks = metrics.block_table(one)
    documented = {"probe_acc", "probe_chance", "probe_p"}
    assert set(blocks.columns[blocks.isna().any()]) == documented
    assert blocks.loc[0, "eta2_null"] == 0.0 and blocks.loc[0, "class_corr_mean"] == 1.0


def test_class_mean_table_matches_a_groupby_of_the_raw_values(mixed: FakeStats) -> None:
    table = metrics.class_mean_table(mixed)
    assert list(table.columns) == ["block", "class", "class_name", "channel", "mean", "std", "count"]
    assert len(table) == 4 * (6 + 4)  # class 4 has no samples: no rows
    for name, v in mixed.values.items():
        raw = pd.DataFrame(v.astype(np.float64)).assign(cls=mixed.labels).melt(id_vars="cls", var_name="channel")
        grouped = raw.groupby(["cls", "channel"])["value"]
        expected = grouped.agg(["mean", "count"]).assign(std=grouped.std(ddof=0))
        got = table[table["block"] == name].set_index(["class", "channel"])
        assert np.allclose(got["mean"], expected["mean"], rtol=1e-12)
        assert np.allclose(got["std"], expected["std"], rtol=1e-9)
        assert (got["count"].to_numpy() == expected["count"].to_numpy()).all()
        assert (got["class_name"].astype(str) == [f"class {k}" for k in got.index.get_level_values(0)]).all()


def test_a_gate_without_samples_raises_nothing_and_reports_nan_only_where_documented() -> None:
    empty = FakeStats({"SE_1": np.zeros((0, 3))}, np.zeros(0, dtype=np.int64), num_classes=4)
    ch = metrics.channel_table(empty)
    assert set(ch.columns[ch.isna().any()]) == {"mean", "std", "sat_high", "sat_low"}
    assert (ch["eta2"] == 0).all() and (ch["mi_bits"] == 0).all() and (ch["p_value"] == 1).all()
    blocks = metrics.block_table(empty)
    assert set(blocks.columns[blocks.isna().any()]) == {
        "eta2_ci_low", "eta2_ci_high", "probe_acc", "probe_chance", "probe_p", "sat_high", "sat_low",
        "gate_mean", "gate_std",
    }  # fmt: skip
    assert blocks.loc[0, "samples"] == 0 and blocks.loc[0, "eta2_null"] == 0.0
    assert len(metrics.class_mean_table(empty)) == 0


def test_probe_chance_is_the_majority_rate_even_when_folds_split_classes():
    # 4 vectors per class, 5 folds: each test fold holds 4 classes once, so a per-fold majority
    # guess (made from the training part) would always miss; chance must stay 1/K.
    labels = np.repeat(np.arange(5), 4)
    values = np.random.default_rng(0).random((20, 3))
    assert metrics.probe(values, labels).chance == pytest.approx(0.2)
    assert metrics.probe(values[:-1], labels[:-1]).chance == pytest.approx(4 / 19)
