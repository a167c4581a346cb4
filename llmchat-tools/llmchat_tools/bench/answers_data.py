"""The answers bench's data: the questions file (JSON Lines, ``{"q": ..., "any": [...]}``), when
an answer is right, when it speaks for someone else, and what is counted per model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmchat_tools.bench.jsonl import json_objects

DEFAULT_QUESTIONS = Path(__file__).with_name("data") / "questions.jsonl"


class QuestionFileError(ValueError):
    """The questions file is not in the documented format (the message says where and why)."""


@dataclass(frozen=True)
class Question:
    q: str
    any: tuple[str, ...]

    def right(self, answer: str) -> bool:
        low = answer.lower()
        return any(a.lower() in low for a in self.any)


def load_questions(path: Path) -> list[Question]:
    """The questions of a JSON Lines file, each ``{"q": str, "any": [str, ...]}``."""
    out: list[Question] = []
    for where, obj in json_objects(path, QuestionFileError, "an object with 'q' and 'any'"):
        q, any_ = obj.get("q"), obj.get("any")
        if not isinstance(q, str) or not q.strip():
            raise QuestionFileError(f"{where}: 'q' must be a non-empty string")
        if (
            not isinstance(any_, list)
            or not any_
            or not all(isinstance(a, str) and a.strip() for a in any_)
        ):
            raise QuestionFileError(f"{where}: 'any' must be a non-empty list of strings")
        if extra := sorted(set(obj) - {"q", "any"}):
            raise QuestionFileError(f"{where}: unknown field(s) {', '.join(extra)}")
        out.append(Question(q.strip(), tuple(a.strip() for a in any_)))
    if not out:
        raise QuestionFileError(f"{path}: no questions")
    return out


def speaks_for_someone_else(text: str, model: str, participants: set[str]) -> bool:
    """What a user must never see in a posted answer (see the module's docstring)."""
    from model_worker.prompt import clean_answer, speaks_for_others  # noqa: PLC0415

    starts_with_own_name = clean_answer(text, model) != text.strip()
    return starts_with_own_name or speaks_for_others(text, model, participants)


@dataclass
class ModelResult:
    name: str
    backend: str
    room_right: int = 0
    direct_right: int = 0
    asked: int = 0
    forged: int = 0
    missing: int = 0
    cut_by_hygiene: int = 0
    retried: int = 0
    room_seconds: list[float] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def room_accuracy(self) -> float:
        return self.room_right / self.asked if self.asked else 0.0

    @property
    def direct_accuracy(self) -> float:
        return self.direct_right / self.asked if self.asked else 0.0

    @property
    def ratio(self) -> float:
        if self.direct_right == 0:
            return 1.0 if self.room_right == 0 else float("inf")
        return self.room_right / self.direct_right
