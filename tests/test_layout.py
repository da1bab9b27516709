"""The package's folders are the stages of the data flow: no module imports from a later stage, and no
modules import each other in a cycle.

Size is a report, not a rule: `python tests/test_layout.py` prints the longest modules and functions
(with the `# long:` reason beside one, where it has one), so that a long piece is seen, not forbidden.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Earlier to later; a module may import its own stage or an earlier one.
STAGES = [
    ("analysis.errors", "analysis.files", "analysis.devices", "analysis.versions", "analysis.options"),
    ("analysis.data",),
    ("analysis.models",),
    ("analysis.capture",),
    ("analysis.measures",),
    ("analysis.runs",),
    ("analysis.experiments",),
    ("analysis.presentation",),
    ("analysis.jobs",),
    ("analysis.cli", "analysis.__main__", "analysis"),
    ("analysis.testing",),  # tiny models and planted statistics for tests and benchmarks
    ("dashboard",),
]
# Cycles that are known and being removed; none now.
KNOWN_CYCLES: list[set[str]] = []
REPORT_MODULE_LINES = 400  # the size report lists modules and functions longer than these
REPORT_FUNCTION_LINES = 60


def stage(module: str) -> int:
    best = max(((len(prefix), i) for i, names in enumerate(STAGES) for prefix in names
                if module == prefix or module.startswith(prefix + ".")), default=None)
    if best is None:
        raise AssertionError(f"{module} belongs to no stage")
    return best[1]


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted([*ROOT.glob("analysis/**/*.py"), *ROOT.glob("dashboard/**/*.py")]):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def imported(tree: ast.AST) -> list[str]:
    """Every project name an import statement of `tree` mentions, anywhere in it (inside functions and
    `if TYPE_CHECKING:` too): `from a.b import c` gives a.b and a.b.c."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"relative import at line {node.lineno}: use absolute imports")
    return [n for n in names if n == "analysis" or n.startswith(("analysis.", "dashboard"))]


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """module -> the modules of `sources` (name -> code) it imports anywhere: `from a.b import c` is the
    module a.b.c where there is one, else a.b."""
    graph = {}
    for name, code in sources.items():
        targets = set()
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in sources else node.module
                            for a in node.names}
        graph[name] = {t for t in targets if t in sources and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The sets of modules that import each other in a cycle (strongly connected components of more
    than one module), by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_stage():
    for name, _ in modules():
        stage(name)


@pytest.mark.parametrize("name,path", modules(), ids=[m for m, _ in modules()])
def test_no_import_runs_back_up_the_flow(name, path):
    here = stage(name)
    later = [m for m in imported(ast.parse(path.read_text())) if m != "analysis" and stage(m) > here]
    assert not later, f"{name} (stage {here}) imports from later stages: {later}"


def test_the_planted_check_catches_a_backward_import():
    tree = ast.parse("from analysis.presentation.figures import depth_curve\nfrom analysis.errors import DataError")
    assert [stage(m) for m in imported(tree)] == [7, 7, 0, 0]


def test_no_modules_import_each_other_in_a_cycle():
    graph = import_graph({name: path.read_text() for name, path in modules()})
    unknown = [sorted(c) for c in cycles(graph) if c not in KNOWN_CYCLES]
    assert not unknown, f"modules importing each other in a cycle: {unknown}"


def test_the_cycle_check_catches_a_planted_cycle():
    sources = {
        "analysis.a": "from analysis.b import f",
        "analysis.b": "def f():\n    from analysis.c import g",  # an import inside a function counts
        "analysis.c": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from analysis.a import h",
        "analysis.d": "import analysis.a",  # imports into the cycle, is not in it
        "analysis.e": "from analysis import d",  # the module d, not the package's __init__
        "analysis": "",
    }
    graph = import_graph(sources)
    assert graph["analysis.e"] == {"analysis.d"}
    assert cycles(graph) == [{"analysis.a", "analysis.b", "analysis.c"}]


def test_tests_import_no_test_module():
    """Shared test code lives in analysis.testing: a test never imports conftest or another test file."""
    files = sorted((ROOT / "tests").rglob("*.py"))
    local = {p.stem for p in files}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            wrong = [n for n in names if n.split(".")[0] in local]
            assert not wrong, f"{path.relative_to(ROOT)}:{node.lineno} imports {wrong}; use analysis.testing"


def _reason(lines: list[str], start: int) -> str:
    """The `# long:` reason written on or beside line `start` (0-based), or ''."""
    for line in lines[max(0, start - 2):start + 3]:
        if "# long:" in line:
            return line.split("# long:", 1)[1].strip()
    return ""


def size_report(sources: dict[str, str], top: int = 10) -> str:
    """The modules over REPORT_MODULE_LINES lines, the functions over REPORT_FUNCTION_LINES, and the
    `top` longest of each, longest first, with a `# long:` reason where one is written."""
    rows_m, rows_f = [], []
    for name, code in sources.items():
        lines = code.splitlines()
        rows_m.append((len(lines), name, _reason(lines, 0)))
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                rows_f.append((node.end_lineno - node.lineno + 1, f"{name}.{node.name}", _reason(lines, node.lineno - 1)))
    out = []
    for title, rows, limit in (("modules", rows_m, REPORT_MODULE_LINES), ("functions", rows_f, REPORT_FUNCTION_LINES)):
        rows.sort(key=lambda r: (-r[0], r[1]))
        over = sum(n > limit for n, _, _ in rows)
        out.append(f"{title}: {len(rows)}, {over} over {limit} lines; the longest:")
        out += [f"  {n:5d}  {name}{'  (long: ' + why + ')' if why else ''}"
                for n, name, why in rows[:max(top, over)]]
    return "\n".join(out)


def test_the_size_report_lists_the_long_pieces_with_their_reason():
    long_body = "\n".join(f"    x{i} = {i}" for i in range(REPORT_FUNCTION_LINES + 5))
    sources = {"analysis.a": f"def short():\n    pass\n\n\ndef long():  # long: a planted reason\n{long_body}\n",
               "analysis.b": "\n" * (REPORT_MODULE_LINES + 1)}
    report = size_report(sources, top=0)
    assert "modules: 2, 1 over 400 lines" in report and "  401  analysis.b" in report
    assert f"functions: 2, 1 over 60 lines" in report
    assert f"{REPORT_FUNCTION_LINES + 6:5d}  analysis.a.long  (long: a planted reason)" in report
    assert "analysis.a.short" not in report


if __name__ == "__main__":
    print(size_report({name: path.read_text() for name, path in modules()}, top=int(sys.argv[1]) if sys.argv[1:] else 10))
