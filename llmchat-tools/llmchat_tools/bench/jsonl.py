"""Reading the benches' JSON Lines input files (questions, judge pairs): one object a line,
blank lines skipped, every problem named with the file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def json_objects(
    path: Path, error: type[ValueError], expected: str, *, column: bool = False
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, object)`` for each non-blank line of ``path`` (``where`` is ``path:line``);
    raises ``error`` when the file cannot be read or a line is not a JSON object (``expected``
    says what it should be; ``column`` adds the column of a JSON syntax error)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from exc
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            at = f" (column {exc.colno})" if column else ""
            raise error(f"{where}: not JSON: {exc.msg}{at}") from exc
        if not isinstance(obj, dict):
            raise error(f"{where}: expected {expected}")
        yield where, obj
