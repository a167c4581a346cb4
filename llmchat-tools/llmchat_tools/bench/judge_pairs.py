"""The judge bench's pairs: the pairs file (JSON Lines; a question, a clearly better and a
clearly worse answer, optional context, reference and tag), a pair's conversation as room
entries, and the fixed coin that places the better answer first or second."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmchat.models import Entry, EntryKind

if TYPE_CHECKING:
    pass

from llmchat_tools.bench.jsonl import json_objects

DATA = Path(__file__).with_name("data")
DEFAULT_PAIRS = DATA / "judge_pairs.jsonl"
FIELDS = {"q", "good", "bad", "context", "reference", "tag"}
_SPEAKER = re.compile(r"^([A-Za-z0-9][\w.-]{0,39}):\s?(.*)$")


class PairFileError(ValueError):
    """The pairs file is not in the documented format (the message says where and why)."""


@dataclass(frozen=True)
class Pair:
    q: str
    good: str
    bad: str
    context: str = ""
    reference: str | None = None
    tag: str = ""

    @property
    def length_trap(self) -> bool:
        """The worse answer is at least twice as long as the better one."""
        return len(self.bad) >= 2 * len(self.good)

    @property
    def long_good(self) -> bool:
        """The better answer is at least twice as long as the worse one."""
        return len(self.good) >= 2 * len(self.bad)


def _text(obj: dict[str, Any], key: str, where: str, *, required: bool) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise PairFileError(f"{where}: {key!r} must be a non-empty string")
    return value.strip()


def load_pairs(path: Path) -> list[Pair]:
    """The pairs of a JSON Lines file (see the bench's docstring for the format)."""
    out: list[Pair] = []
    expected = "an object with 'q', 'good' and 'bad'"
    for where, obj in json_objects(path, PairFileError, expected, column=True):
        if extra := sorted(set(obj) - FIELDS):
            allowed = ", ".join(sorted(FIELDS))
            raise PairFileError(
                f"{where}: unknown field(s) {', '.join(extra)} (allowed: {allowed})"
            )
        q, good, bad = (_text(obj, k, where, required=True) or "" for k in ("q", "good", "bad"))
        if good == bad:
            raise PairFileError(f"{where}: 'good' and 'bad' are the same answer")
        out.append(
            Pair(
                q=q,
                good=good,
                bad=bad,
                context=_text(obj, "context", where, required=False) or "",
                reference=_text(obj, "reference", where, required=False),
                tag=_text(obj, "tag", where, required=False) or "",
            )
        )
    if not out:
        raise PairFileError(f"{path}: no pairs")
    return out


def conversation(pair: Pair) -> list[Entry]:
    """The pair's conversation as room entries: its context lines, then the question."""
    rows: list[tuple[str, str]] = []
    for line in pair.context.splitlines():
        if not line.strip():
            continue
        m = _SPEAKER.match(line.strip())
        rows.append((m.group(1), m.group(2)) if m else ("user", line.strip()))
    rows.append(("user", pair.q))
    return [
        Entry(id=f"{i + 1}-0", room="bench", author=a, text=t, kind=EntryKind.HUMAN)
        for i, (a, t) in enumerate(rows)
    ]


def good_first(index: int, pair: Pair) -> bool:
    """The fixed coin that places the better answer first or second (for the kappa)."""
    return hashlib.sha256(f"{index}:{pair.q}".encode()).digest()[0] % 2 == 0
