"""A run's names (classes, runs, models) are drawn as text in every figure, never parsed as mathtext:
`$` in a class name once crashed `report` and every dashboard page."""

from __future__ import annotations

import html

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from analysis.testing.planted import planted_stats, resnet_gates
from analysis.capture.stats import StatsConfig
from analysis.jobs import save_run
from analysis.presentation import figures, report, views
from analysis.presentation.report import write_reports

BROKEN = r"price_$\frac{$"  # not valid mathtext: parsing it raises
VALID = r"$x^2$ cost"  # valid mathtext: parsed, it would be drawn as math, not as its characters
NAMES = [BROKEN, VALID, "plain", "a$b"]


@pytest.fixture(scope="module")
def dollar_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dollars")
    runs = []
    for name in (BROKEN, VALID):
        stats = planted_stats(resnet_gates(tuple(range(4, 20))), 4, 20, config=StatsConfig(num_classes=4, reservoir=4))
        stats.class_names = list(NAMES)
        runs.append(save_run(stats, root / name, {"model": f"model {BROKEN}", "data": {"spec": f"data {VALID}"}}))
    return runs


def texts(fig) -> list[Text]:
    FigureCanvasAgg(fig).draw()  # tick labels are made while drawing
    return [t for t in fig.findobj(Text) if t.get_text()]


def test_every_figure_of_a_report_draws_dollar_names_as_text(dollar_runs):
    run = dollar_runs[0]
    drawn = report.run_figures(run)
    drawn["compare"] = figures.compare_curves(views.compare({r.path.name: r for r in dollar_runs}), "eta2_mean")
    for name, fig in drawn.items():
        found = texts(fig)
        with_dollar = [t for t in found if "$" in t.get_text()]
        assert all(not t.get_parse_math() for t in found), name
        if name in ("profiles", "heatmap", "similarity", "distributions", "compare"):  # they name classes or runs
            assert {BROKEN, VALID} <= {t.get_text() for t in with_dollar}, name


def test_a_literal_dollar_name_is_as_wide_as_its_characters():
    """The drawn width of VALID equals that of its characters drawn with mathtext off, and differs
    from its width as math: what shows is the name."""
    fig = figures.similarity_matrix(np.eye(2), [VALID, "b"], "SE_2_1")
    drawn = next(t for t in texts(fig) if t.get_text() == VALID)
    renderer = fig.canvas.get_renderer()
    same = {"fontproperties": drawn.get_fontproperties(), "rotation": drawn.get_rotation(), "figure": fig}
    literal, as_math = Text(text=VALID, parse_math=False, **same), Text(text=VALID, parse_math=True, **same)
    width = drawn.get_window_extent(renderer).width
    assert width == pytest.approx(literal.get_window_extent(renderer).width, rel=1e-6)
    assert width != pytest.approx(as_math.get_window_extent(renderer).width, rel=1e-3)


def test_report_and_index_of_runs_with_dollar_names(dollar_runs, tmp_path):
    written = write_reports([r.path for r in dollar_runs], tmp_path / "out", pdf=True, progress=False)
    page = written[0].html.read_text()
    assert html.escape(f"model {BROKEN}") in page and (written[0].folder / "report.pdf").stat().st_size > 1000
    assert (tmp_path / "out" / "index.html").is_file()
