"""The package's folders are the stages of the data flow: no module imports from a later stage.

Also: no module over MAX_MODULE_LINES and no function over MAX_FUNCTION_LINES lines unless a
`# long: why` comment on its first lines says why.
"""

from __future__ import annotations

import ast
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
    ("dashboard",),
]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


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


def _explained(lines: list[str], start: int) -> bool:
    return any("# long:" in line for line in lines[max(0, start - 2):start + 3])


@pytest.mark.parametrize("name,path", modules(), ids=[m for m, _ in modules()])
def test_modules_and_functions_are_short_or_say_why(name, path):
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_MODULE_LINES or _explained(lines, 0), f"{name}: {len(lines)} lines"
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES or _explained(lines, node.lineno - 1), (
                f"{name}.{node.name}: {length} lines without a '# long:' reason")
