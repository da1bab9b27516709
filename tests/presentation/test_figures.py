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
from matplotlib.figure import Figure
from matplotlib.image import imread

from analysis.capture.stats import StatsConfig
from analysis.presentation import figures, views
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
    }


def figure_functions() -> list[str]:
    return sorted(name for name, f in vars(figures).items() if inspect.isfunction(f)
                  and f.__module__ == figures.__name__ and typing.get_type_hints(f).get("return") is Figure)


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
        assert fig.axes[0].xaxis.label.get_fontsize() == figures.STYLE["axes.labelsize"], name
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
