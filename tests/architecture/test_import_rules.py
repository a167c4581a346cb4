"""The house's import rules, read from the source (every ``import``, also inside functions):

* the library (``llmchat``, without its tools) imports no service and no tool;
* a service (``chat_service``, ``model_worker``, ``judge``, ``chatroom_operator``) imports the
  library and itself, never another service;
* the tools (``llmchat_tools``: the ``llmchat`` command, benches, local supervisor, dev
  cluster, clients) sit on top and may import anything; nothing imports them.

One doorway is allowed: ``llmchat/__main__.py`` runs the command (``python -m llmchat``); no
module imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = {
    "chat_service": ROOT / "chat-service" / "chat_service",
    "model_worker": ROOT / "model-worker" / "model_worker",
    "judge": ROOT / "judge" / "judge",
    "chatroom_operator": ROOT / "operator" / "chatroom_operator",
}
LIBRARY = ROOT / "llmchat"
TOOLS = ROOT / "llmchat-tools" / "llmchat_tools"
DOORWAY = LIBRARY / "__main__.py"


def imported(path: Path) -> set[str]:
    """Top-level and dotted module names ``path`` imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def library_modules() -> list[Path]:
    return sorted(p for p in LIBRARY.rglob("*.py") if p != DOORWAY)


def forbidden_for_library(names: set[str]) -> list[str]:
    return sorted(n for n in names if n.split(".")[0] in {*SERVICES, "llmchat_tools"})


def forbidden_for_service(service: str, names: set[str]) -> list[str]:
    others = set(SERVICES) - {service}
    return sorted(n for n in names if n.split(".")[0] in {*others, "llmchat_tools"})


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_imports_no_service_and_no_tool(path: Path) -> None:
    assert forbidden_for_library(imported(path)) == []


@pytest.mark.parametrize(
    ("service", "path"),
    [(s, p) for s, d in SERVICES.items() for p in sorted(d.rglob("*.py"))],
    ids=lambda v: v if isinstance(v, str) else str(v.relative_to(ROOT)),
)
def test_a_service_imports_no_other_service(service: str, path: Path) -> None:
    assert forbidden_for_service(service, imported(path)) == []


def test_the_rules_catch_a_forbidden_import(tmp_path: Path) -> None:
    """The checks above would fail on a forbidden import, also one hidden in a function."""
    src = tmp_path / "bad.py"
    src.write_text(
        "import json\n"
        "from llmchat.models import Entry\n"
        "def f() -> None:\n"
        "    from model_worker.prompt import build_prompt\n"
        "    import judge.rubric\n"
        "    from llmchat_tools.bench import answers\n"
    )
    names = imported(src)
    assert forbidden_for_library(names) == [
        "judge.rubric",
        "llmchat_tools.bench",
        "model_worker.prompt",
    ]
    assert forbidden_for_service("judge", names) == ["llmchat_tools.bench", "model_worker.prompt"]
    assert forbidden_for_service("model_worker", names) == ["judge.rubric", "llmchat_tools.bench"]


def test_nothing_imports_the_tools_but_the_tools_and_the_doorway() -> None:
    outside = [
        p
        for folder in (LIBRARY, *SERVICES.values())
        for p in folder.rglob("*.py")
        if p != DOORWAY and any(n.split(".")[0] == "llmchat_tools" for n in imported(p))
    ]
    assert outside == []
    assert "llmchat_tools.cli" in imported(DOORWAY)


def test_every_module_is_covered() -> None:
    """A new folder of the library or a service is not silently outside the rules."""
    assert len(library_modules()) > 25
    assert any(TOOLS.rglob("*.py"))
    for service, folder in SERVICES.items():
        assert any(folder.rglob("*.py")), service
