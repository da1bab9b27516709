"""Linear CKA against a direct Gram-space computation, its invariances, and the run tables matched by sample id."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from analysis.capture.collect import collect
from analysis.errors import RunMismatchError
from analysis.measures.similarity import linear_cka, shared_rows, similarity, squeeze_similarity
from analysis.testing.nets import batches, record_gates


def gram_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al.'s definition: HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), HSIC = tr(K H L H)."""
    n = len(x)
    h = np.eye(n) - 1.0 / n
    k, l = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h)

    return hsic(k, l) / math.sqrt(hsic(k, k) * hsic(l, l))


def unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. 2012's unbiased HSIC, written from its definition on the (uncentred) Gram matrices."""
    n = len(k)
    kt, lt = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    one = np.ones(n)
    return (np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ kt @ lt @ one) / (n * (n - 3))


def related(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 7)) + 3.0
    y = np.tanh(x[:, :4] @ rng.normal(size=(4, 5))) + 0.5 * rng.normal(size=(n, 5))
    return x, y


def test_cka_is_the_gram_space_definition():
    x, y = related()
    assert linear_cka(x, y) == pytest.approx(gram_cka(x, y), rel=1e-12)
    assert 0.1 < linear_cka(x, y) < 0.95  # a case between the extremes


def test_debiased_cka_is_the_unbiased_hsic_of_song_et_al():
    x, y = related(40, seed=1)
    k, l = x @ x.T, y @ y.T
    expected = unbiased_hsic(k, l) / math.sqrt(unbiased_hsic(k, k) * unbiased_hsic(l, l))
    assert linear_cka(x, y, debiased=True) == pytest.approx(expected, rel=1e-10)


def test_invariances_and_extremes():
    x, y = related()
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(7, 7)))
    for debiased in (False, True):
        base = linear_cka(x, y, debiased=debiased)
        assert linear_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
        assert linear_cka(x @ q, y, debiased=debiased) == pytest.approx(base, rel=1e-10)
        assert linear_cka(-4.2 * x + 1.5, 0.01 * y, debiased=debiased) == pytest.approx(base, rel=1e-10)
        # not invariant to an anisotropic scaling: what CKA is meant to notice
        assert linear_cka(x * np.arange(1, 8), y, debiased=debiased) != pytest.approx(base, rel=1e-3)
    # independent features: plain CKA keeps a bias of about features / images, the debiased one not
    a, b = rng.normal(size=(2000, 20)), rng.normal(size=(2000, 20))
    assert linear_cka(a, b) > 0.005
    assert abs(linear_cka(a, b, debiased=True)) < 0.003


def test_undefined_cases_are_nan():
    x, y = related()
    assert math.isnan(linear_cka(x[:3], y[:3]))
    assert math.isnan(linear_cka(np.ones((10, 3)), y[:10]))
    with pytest.raises(ValueError):
        linear_cka(x, y[:10])


def test_shared_rows_in_id_order():
    rows_a, rows_b = shared_rows(np.array([7, 3, 9, 1]), np.array([9, 4, 1, 7]))
    assert rows_a.tolist() == [3, 0, 2] and rows_b.tolist() == [2, 3, 0]  # ids 1, 7, 9


def test_run_tables_match_the_gate_vectors_of_the_shared_images(planted):
    model, x, y = planted
    whole = collect(model, batches(x, y, 100), 10, progress=False)
    # a second pass over every other image, in another order and batch size: its reservoir keeps a subset
    part = torch.arange(len(y) - 2, -1, -2)
    ids = part.tolist()
    half = collect(model, [(x[part[i:i + 70]], y[part[i:i + 70]], part[i:i + 70]) for i in range(0, len(ids), 70)],
                   10, progress=False)
    table = similarity(whole, half)
    every = record_gates(model, [g.path for g in whole.gates], x)
    shared = np.intersect1d(whole.reservoir("SE_2_1")[2].numpy(), half.reservoir("SE_2_1")[2].numpy())
    assert 100 < len(shared) < len(whole.reservoir("SE_2_1")[2])
    for gate in whole.gates:
        for other in whole.gates:
            row = table[(table.block_a == gate.name) & (table.block_b == other.name)].iloc[0]
            expected = linear_cka(every[gate.path][shared], every[other.path][shared])
            assert row["samples"] == len(shared)
            assert row["cka"] == pytest.approx(expected, rel=1e-5)  # float32 reservoir against float64 hooks
    same = similarity(whole, whole, pairs="same")
    assert list(same.block_a) == list(same.block_b) == [g.name for g in whole.gates]
    assert np.allclose(same.cka, 1.0) and np.allclose(same.cka_debiased, 1.0)
    # z against s: the planted blocks all read the input itself, so z is the images' channel means
    squeeze = squeeze_similarity(whole).set_index("block")
    kept = np.sort(whole.reservoir("SE_2_1")[2].numpy())
    z = x.double().mean((2, 3)).numpy()[kept]
    for gate in whole.gates:
        assert squeeze.loc[gate.name, "cka"] == pytest.approx(linear_cka(z, every[gate.path][kept]), rel=1e-5)
    # the class-free blocks read the noise channels, the class blocks the class channels: z's structure is
    # dominated by the per-image offsets all channels share, so both halves keep part of it
    assert squeeze["cka"].between(0.05, 1.0).all()


def test_runs_without_common_images_are_refused(planted):
    model, x, y = planted
    a = collect(model, batches(x[:600], y[:600], 100), 10, progress=False)
    b = collect(model, [(x[600:], y[600:], torch.arange(600, 1200))], 10, progress=False)
    with pytest.raises(RunMismatchError, match="no image in common"):
        similarity(a, b)


def test_the_similarity_command_prints_the_library_tables(tmp_path, capsys):
    """`se-analysis similarity`: two runs of other weights over the same images (their reservoirs keep every
    image), a run against itself, z against s in one run; data of other images is one sentence, exit 2."""
    from analysis.cli import main
    from analysis.runs.folder import load_run
    from analysis.testing.runs import cli_error

    def run(name: str, seed: int, data: str = "synthetic:classes=3,n=48,size=16,channels=1") -> str:
        out = str(tmp_path / name)
        assert main(["collect", "--model", "se_resnet20", "--random-init", "--seed", str(seed), "--data", data,
                     "--out", out, "--quiet"]) == 0
        return out

    a, b = run("a", 0), run("b", 1)
    capsys.readouterr()
    assert main(["similarity", a, b]) == 0
    printed = capsys.readouterr().out.splitlines()
    table = similarity(load_run(a).stats, load_run(b).stats)
    assert set(table["samples"]) == {48}
    heading = printed.index("cka, 48 images")
    blocks = printed[heading + 1].split()[1:]  # "block_b SE_2_1 ...", then "block_a", then one row per block
    assert blocks == list(table["block_b"].unique())
    for line in printed[heading + 3: heading + 3 + len(blocks)]:
        block_a, *values = line.split()
        expected = table[table.block_a == block_a].set_index("block_b").loc[blocks, "cka"]
        assert [float(v) for v in values] == pytest.approx(expected.round(3).tolist(), abs=1e-9)
    assert main(["similarity", a, a, "--pairs", "same"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert len(rows) == len(blocks) and all(r[0] == r[1] and r[3:] == ["1.000", "1.000"] for r in rows)
    assert main(["similarity", a]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    expected = squeeze_similarity(load_run(a).stats)
    assert [float(r[2]) for r in rows] == pytest.approx(expected["cka"].round(3).tolist(), abs=1e-9)
    other = run("c", 0, "synthetic:classes=3,n=48,size=16,channels=1,seed=5")  # other images of the same ids
    assert "read other data" in cli_error(capsys, ["similarity", a, other])
