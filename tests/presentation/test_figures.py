"""Figures: screen-resolution reductions against brute force; plain Figures that leave matplotlib's
global state alone and come out the same when drawn from two threads at once."""

from __future__ import annotations

import inspect
import io
import os
import subprocess
import sys
import threading
import typing

import matplotlib
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imread

from analysis.capture.stats import StatsConfig
from analysis.presentation import figures, views
from analysis.presentation.style import PALETTE, STYLE
from analysis.jobs import save_run
from analysis.testing.planted import planted_stats, resnet_gates
from analysis.testing.runs import NEW_COLUMNS


def test_envelope_keeps_every_runs_extremes():
    values = np.random.default_rng(0).random(2048)
    x, low, high = figures.envelope(values, 500)
    width = 5  # ceil(2048 / 500)
    assert len(x) == len(low) == len(high) == 410
    for i, start in enumerate(range(0, 2048, width)):
        run = values[start:start + width]
        assert low[i] == run.min() and high[i] == run.max() and start <= x[i] <= start + len(run) - 1
    assert low.min() == values.min() and high.max() == values.max()


def test_heatmap_groups_neighbouring_channels_by_their_mean():
    g = np.random.default_rng(1)
    mean, order = g.random((5, 10)), g.permutation(10)
    fig = figures.class_channel_heatmap(mean, order, [str(k) for k in range(5)], "SE_2_1", max_columns=4)
    shown = fig.axes[0].images[0].get_array()
    centred = (mean - mean.mean(0))[:, order]
    expected = np.stack([centred[:, 0:3].mean(1), centred[:, 3:6].mean(1), centred[:, 6:9].mean(1), centred[:, 9]], 1)
    np.testing.assert_allclose(shown, expected)
    assert fig.axes[0].images[0].get_extent() == [-0.5, 9.5, 4.5, -0.5]  # x still counts channels


def test_import_changes_neither_backend_nor_style():
    # A fresh interpreter on the svg backend: matplotlib.use("Agg") or sns.set_theme at import would show.
    probe = """
import matplotlib, matplotlib.colors as mc
before, k = dict(matplotlib.rcParams), mc.to_rgb("k")
import analysis.presentation.figures
after = dict(matplotlib.rcParams)
assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
assert after == before, {key: (before[key], after[key]) for key in before if before[key] != after[key]}
assert mc.to_rgb("k") == k
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**os.environ, "MPLBACKEND": "svg"})
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def figure_inputs(tmp_path_factory) -> dict[str, tuple]:
    """Arguments for every figure function, from a small planted run and hand-made tables."""
    stats = planted_stats(resnet_gates((4, 6), (1, 1)), 3, 20, config=StatsConfig(num_classes=3, reservoir=4))
    run = save_run(stats, tmp_path_factory.mktemp("fig") / "run", {"model": "synthetic"})
    means, names = views.class_mean_arrays(run), views.class_names(run)
    block = views.block_names(run)[-1]
    effects = pd.DataFrame({"block": ["SE_2_1", "SE_2_1", "SE_2_2", "SE_2_2"], "intervention": ["ones", "mean"] * 2,
                            "change_pp": [-1.0, -2.0, 0.5, 0.0], "change_pp_ci_low": [-2.0, -3.0, 0.0, -0.5],
                            "change_pp_ci_high": [0.0, -1.0, 1.0, 0.5], "eta2_excess": [0.1, 0.1, 0.4, 0.4],
                            "sat_high": [0.2, 0.2, 0.0, 0.0], "sat_low": [0.0, 0.0, 0.1, 0.1]})
    attributions = pd.DataFrame({"block": ["SE_2_1", "SE_2_2"], "eta2_mean": [0.1, 0.5],
                                 "eta2_weighted": [0.2, 0.4], "share_abs_attr": [0.3, 0.7]})
    controls = run.blocks.assign(**{c: run.blocks["depth"] / 10 + i / 100 for i, c in enumerate(NEW_COLUMNS)})
    onsets = {"onset (shape)": block, "onset (detectable)": views.block_names(run)[0]}
    trajectory = pd.concat([run.blocks.assign(epoch=e, test_accuracy=0.8 + e / 100, onset_shape=onset,
                                              onset_detectable=views.block_names(run)[0])
                            for e, onset in ((1, None), (5, block))])
    return {
        "depth_curve": (controls, onsets),
        "shape_curve": (controls, onsets),
        "saturation_bars": (run.blocks,),
        "class_profiles": ({b: means[b] for b in views.default_blocks(run)}, [0, 2], names, True, 4),
        "class_channel_heatmap": (means[block][0], views.preferred_order(run, block), names, block),
        "gate_distributions": (views.gate_distribution(run, block, None, [0, 1]), block),
        "similarity_matrix": (views.class_similarity(means[block][0]), names, block),
        "compare_curves": (views.compare({"a": run, "b": run}),),
        "intervention_effects": (effects,),
        "attribution_depth": (attributions,),
        "trajectory_figure": (trajectory,),
    }


def figure_functions() -> list[str]:
    """Every figure function the front ends call through `figures` (the profile figure lives in its own module)."""
    return sorted(name for name, f in vars(figures).items() if inspect.isfunction(f)
                  and f.__module__.startswith("analysis.presentation.") and typing.get_type_hints(f).get("return") is Figure)


def png(fig: Figure) -> np.ndarray:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=30)
    buffer.seek(0)
    return imread(buffer)


def test_every_figure_function_returns_a_plain_figure_in_the_style(figure_inputs):
    assert figure_functions() == sorted(figure_inputs)  # a new figure function needs inputs here
    before = dict(matplotlib.rcParams)
    for name, args in figure_inputs.items():
        fig = getattr(figures, name)(*args)
        assert isinstance(fig, Figure) and fig.canvas.manager is None, name  # not registered with pyplot
        assert fig.axes[0].xaxis.label.get_fontsize() == STYLE["axes.labelsize"], name
        plain = png(fig)
        with matplotlib.rc_context({"xtick.labelsize": 3, "axes.prop_cycle": matplotlib.cycler(color=["red"])}):
            assert np.array_equal(png(getattr(figures, name)(*args)), plain), name  # the caller's style is not drawn
    assert dict(matplotlib.rcParams) == before


def test_figures_drawn_from_two_threads_come_out_as_drawn_alone(figure_inputs):
    names = ("depth_curve", "class_profiles", "gate_distributions", "intervention_effects")
    alone = {name: png(getattr(figures, name)(*figure_inputs[name])) for name in names}
    data = {name: [line.get_ydata() for line in getattr(figures, name)(*figure_inputs[name]).axes[0].lines]
            for name in names}
    before = dict(matplotlib.rcParams)
    failures: list[str] = []
    start = threading.Barrier(2)

    def draw(order: tuple[str, ...]) -> None:
        start.wait()
        for _ in range(2):
            for name in order:
                fig = getattr(figures, name)(*figure_inputs[name])
                lines = [line.get_ydata() for line in fig.axes[0].lines]
                if len(lines) != len(data[name]) or not all(np.array_equal(a, b) for a, b in zip(lines, data[name])):
                    failures.append(f"{name}: axes data")
                if not np.array_equal(png(fig), alone[name]):
                    failures.append(f"{name}: pixels")

    threads = [threading.Thread(target=draw, args=(order,)) for order in (names, names[::-1])]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so that a race on the global rcParams would show
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not failures, failures
    assert dict(matplotlib.rcParams) == before


def test_depth_and_shape_curves_draw_each_control_a_run_has(figure_inputs):
    blocks, onsets = figure_inputs["depth_curve"]
    drawn = {line.get_label(): line.get_ydata() for ax in figures.depth_curve(blocks, onsets).axes for line in ax.lines}
    for label, column in (("permutation null (shuffled labels)", "eta2_perm"), ("probe on permuted labels", "probe_perm")):
        np.testing.assert_array_equal(drawn[label], blocks[column])
    assert list(drawn["untrained network"]) in (list(blocks["eta2_untrained"]), list(blocks["probe_untrained"]))
    assert {f"{label} {block}" for label, block in onsets.items()} <= set(drawn)
    older = blocks.drop(columns=list(NEW_COLUMNS))  # a run without controls: only what it has
    labels = {line.get_label() for ax in figures.depth_curve(older, onsets).axes for line in ax.lines}
    assert not labels & {"permutation null (shuffled labels)", "untrained network", "squeeze input z"}
    shape = {line.get_label(): line.get_ydata() for line in figures.shape_curve(blocks, onsets).axes[0].lines}
    np.testing.assert_array_equal(shape["trained: shape_sep"], blocks["shape_sep"])
    np.testing.assert_array_equal(shape["untrained network: shape_sep"], blocks["shape_sep_untrained"])


def trained_like_means(k: int = 3, c: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class means as trained gates have them: channels at 0.4-0.6, classes ~0.01 apart; [K, C] each."""
    g = np.random.default_rng(seed)
    mean = 0.4 + 0.2 * g.random(c) + 0.01 * g.standard_normal((k, c))
    return mean, np.full((k, c), 0.003)


def test_profiles_fit_the_data_instead_of_0_to_1():
    mean, std = trained_like_means()
    deviation, common = mean - mean.mean(0), mean.mean(0)
    strip, main = figures.class_profiles({"SE_4_2": (mean, std)}, [0, 1, 2], ["a", "b", "c"]).axes
    for c, line in enumerate(main.get_lines()[:3]):  # each class minus the all-class curve, the 0 line after them
        np.testing.assert_allclose(line.get_ydata(), deviation[c])
    np.testing.assert_allclose(strip.get_lines()[0].get_ydata(), common)
    reach = np.abs(deviation).max()
    assert main.get_ylim() == pytest.approx((-1.1 * reach, 1.1 * reach)) and reach < 0.05  # not 0..1
    low, high = strip.get_ylim()
    assert low <= common.min() and common.max() <= high and high - low < 1.2 * np.ptp(common)
    with_bands = figures.class_profiles({"SE_4_2": (mean, std)}, [0, 1, 2], ["a", "b", "c"], spread=True).axes[1]
    assert len(with_bands.collections) == 3 and all(band.get_alpha() >= 0.2 for band in with_bands.collections)
    assert with_bands.get_ylim()[1] == pytest.approx(1.1 * (np.abs(deviation) + std).max())  # the bands fit too
    data = figures.class_profiles({"SE_4_2": (mean, std)}, [0, 1, 2], ["a", "b", "c"], scale="data").axes[0]
    low, high = data.get_ylim()
    assert low <= mean.min() and mean.max() <= high and high - low < 1.2 * np.ptp(mean)
    unit = figures.class_profiles({"SE_4_2": (mean, std)}, [0, 1, 2], ["a", "b", "c"], scale="unit").axes[0]
    assert unit.get_ylim() == (0, 1)


# Machado, Oliveira & Fernandes (2009): linear RGB seen with full protanopia, deuteranopia
MACHADO = {"protanopia": [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]],
           "deuteranopia": [[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]}


def closest_pair(colors: list[str], vision: list[list[float]]) -> float:
    """The smallest CIELAB distance between two of the colours as seen with `vision` (sRGB, D65)."""
    rgb = np.array([matplotlib.colors.to_rgb(c) for c in colors])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    seen = np.clip(linear @ np.array(vision).T, 0, 1)
    xyz = seen @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    xyz /= [0.95047, 1.0, 1.08883]
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    lab = np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)
    return min(np.linalg.norm(lab[i] - lab[j]) for i in range(len(lab)) for j in range(i))


def test_classes_keep_apart_under_red_green_colour_blindness():
    deep = sns.color_palette("deep").as_hex()  # the palette before: Dress and Ankle boot looked alike
    for n in (4, 10):  # the 4 classes drawn by default, every Fashion-MNIST class
        for vision in MACHADO.values():
            assert closest_pair(list(PALETTE[:n]), vision) > closest_pair(deep[:n], vision)
    drawn = figures.class_profiles({"SE_4_3": trained_like_means(10)}, list(range(10)), [str(k) for k in range(10)])
    assert len({line.get_color() for line in drawn.axes[1].get_lines()[:10]}) == 10


def test_saturation_says_when_no_gate_is_saturated_and_fits_the_shares(figure_inputs):
    (blocks,) = figure_inputs["saturation_bars"]
    none = blocks.assign(sat_high=0.0, sat_low=0.0)
    assert any("no block is saturated" in t.get_text() for t in figures.saturation_bars(none).axes[0].texts)
    some = blocks.assign(sat_high=np.linspace(0, 0.02, len(blocks)), sat_low=0.01)
    ax = figures.saturation_bars(some).axes[0]
    assert not ax.texts and ax.get_ylim()[1] == pytest.approx(1.15 * 0.03)


def test_similarity_colours_span_the_values_found():
    sim = np.array([[1.0, 0.62, 0.9], [0.62, 1.0, 0.75], [0.9, 0.75, 1.0]])
    assert figures.similarity_matrix(sim, ["a", "b", "c"], "SE_4_3").axes[0].images[0].get_clim() == (0.62, 1.0)


def test_legends_cover_no_point_and_runs_are_compared_at_block_names(figure_inputs):
    for name in ("depth_curve", "shape_curve", "saturation_bars"):
        fig = getattr(figures, name)(*figure_inputs[name])
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        legends = [*fig.legends, *(lg for sub in fig.subfigs for lg in sub.legends),
                   *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
        assert legends, name
        for legend in legends:
            box = legend.get_window_extent(renderer)
            assert not any(box.overlaps(ax.get_window_extent(renderer)) for ax in fig.axes), name
    (table,) = figure_inputs["compare_curves"]
    ax = figures.compare_curves(table).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == table.loc[table["run"] == "a", "block"].tolist()
