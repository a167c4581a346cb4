"""Units small enough for one reading, read from the source (ast):

* no module of the project over ``MAX_MODULE_LINES`` lines;
* no function (or method, nested or not) over ``MAX_FUNCTION_LINES`` lines, counted from its
  ``def`` (decorators apart) to its last line: ``end_lineno - lineno + 1``.

Every ``.py`` file of the project counts, outside ``tests/`` and the virtual environment: the
library, the tools, the services and ``tools/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = (
    "llmchat",
    "llmchat-tools",
    "chat-service",
    "model-worker",
    "judge",
    "operator",
    "tools",
)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def project_modules(root: Path = ROOT) -> list[Path]:
    """Every ``.py`` file below the project's source folders (no tests, no .venv)."""
    return sorted(
        p
        for folder in SOURCES
        for p in (root / folder).rglob("*.py")
        if not {".venv", "tests", "__pycache__"} & set(p.relative_to(root).parts)
    )


def oversized(path: Path, root: Path = ROOT) -> list[str]:
    """One line per unit of ``path`` over its limit: the module, then each long function."""
    text = path.read_text()
    name = str(path.relative_to(root))
    found: list[str] = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        found.append(f"{name}: module of {lines} lines (limit {MAX_MODULE_LINES})")
    for node in ast.walk(ast.parse(text, name)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(
                    f"{name}:{node.lineno}: function {node.name} of {length} lines "
                    f"(limit {MAX_FUNCTION_LINES})"
                )
    return found


@pytest.mark.parametrize("path", project_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_or_function_is_too_big(path: Path) -> None:
    found = oversized(path)
    assert found == [], "\n".join(found)


def test_the_sources_are_found() -> None:
    """The walk sees the library, the tools and every service, and nothing under tests/."""
    found = {p.relative_to(ROOT).parts[0] for p in project_modules()}
    assert {"llmchat", "llmchat-tools", "chat-service", "model-worker", "judge", "operator"} <= (
        found
    )
    assert all("tests" not in p.relative_to(ROOT).parts for p in project_modules())


def test_the_check_names_an_oversized_module_and_function(tmp_path: Path) -> None:
    """A synthetic module over both limits is named, with each long function, not the short."""
    pkg = tmp_path / "llmchat-tools" / "pkg"
    pkg.mkdir(parents=True)
    long_body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    short = "def short() -> int:\n    return 1\n\n\n"
    text = (
        "def long_one() -> None:\n"
        + long_body
        + "\n\nclass Box:\n    async def long_method(self) -> None:\n"
        + long_body.replace("    ", "        ")
        + "\n\n"
        + short
        + "".join(f"Y{i} = {i}\n" for i in range(MAX_MODULE_LINES))
    )
    big = pkg / "big.py"
    big.write_text(text)
    (pkg / "small.py").write_text(short)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "huge.py").write_text(text)

    assert project_modules(tmp_path) == [pkg / "big.py", pkg / "small.py"]
    found = oversized(big, tmp_path)
    assert len(found) == 3
    assert found[0].startswith("llmchat-tools/pkg/big.py: module of ")
    assert any(f"function long_one of {MAX_FUNCTION_LINES + 1} lines" in f for f in found)
    assert any(f"function long_method of {MAX_FUNCTION_LINES + 1} lines" in f for f in found)
    assert not any("short" in f for f in found)
    assert oversized(pkg / "small.py", tmp_path) == []
