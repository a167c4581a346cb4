"""`llmchat bench answers`: its input format, its scoring, and a short run on the real room."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from llmchat_tools.bench.answers import run_suite
from llmchat_tools.bench.answers_ask import parse_room_url
from llmchat_tools.bench.answers_data import (
    DEFAULT_QUESTIONS,
    Question,
    QuestionFileError,
    load_questions,
    speaks_for_someone_else,
)


def test_the_committed_question_sets_follow_the_format() -> None:
    ours = load_questions(DEFAULT_QUESTIONS)
    heldout = load_questions(DEFAULT_QUESTIONS.with_name("questions-heldout.jsonl"))
    assert len(ours) >= 40 and len(heldout) >= 40
    assert not {q.q for q in ours} & {q.q for q in heldout}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "expected an object"),
        ('{"q": "", "any": ["x"]}', "'q' must be a non-empty string"),
        ('{"q": "Why?", "any": []}', "'any' must be a non-empty list"),
        ('{"q": "Why?", "any": ["x", 3]}', "'any' must be a non-empty list"),
        ('{"q": "Why?", "any": ["x"], "a": 1}', "unknown field(s) a"),
    ],
)
def test_a_bad_line_is_named_with_its_problem(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"q": "Fine?", "any": ["yes"]}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(QuestionFileError, match=f"q.jsonl:3: .*{re.escape(problem)}"):
        load_questions(path)
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(QuestionFileError, match="no questions"):
        load_questions(path)


def test_right_is_any_string_case_insensitive() -> None:
    q = Question("How many?", ("seven", "7"))
    assert q.right("There are 7.") and q.right("SEVEN days") and not q.right("six")


def test_what_speaks_for_someone_else() -> None:
    people = {"al", "smol", "qwen"}
    assert speaks_for_someone_else("Paris.\nal: thanks", "smol", people)
    assert speaks_for_someone_else("smol: Paris.", "smol", people)  # starts with its own name
    assert speaks_for_someone_else("Paris.\nUser: and Spain?", "smol", people)
    assert not speaks_for_someone_else("Paris, as qwen said.", "smol", people)


def test_room_urls() -> None:
    assert parse_room_url("http://127.0.0.1:8000/rooms/lobby") == ("http://127.0.0.1:8000", "lobby")
    assert parse_room_url("http://h:1/api/v1/rooms/r2") == ("http://h:1", "r2")
    assert parse_room_url("http://h:1/#/r3") == ("http://h:1", "r3")
    assert parse_room_url("http://h:1") == ("http://h:1", "lobby")


@pytest.mark.model
@pytest.mark.slow
def test_a_short_run_through_the_default_room(tmp_path: Path) -> None:
    """Three questions through the real default room and directly: every figure is there."""
    path = tmp_path / "q.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(q)
            for q in (
                {"q": "What is the capital of France?", "any": ["paris"]},
                {"q": "How many legs does a spider have?", "any": ["eight", "8"]},
                {"q": "What is the opposite of hot?", "any": ["cold"]},
            )
        ),
        encoding="utf-8",
    )
    worst, forged = run_suite(path, None, None, None, None, 7, tmp_path / "out")
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(data["models"]) == {"smol", "qwen"}
    for model in data["models"].values():
        assert model["asked"] == 3 and model["missing"] == 0
        assert 0 <= model["room_right"] <= 3 and 0 <= model["direct_right"] <= 3
        assert all(s["room"] for s in model["samples"])  # every model answered every question
    assert forged == 0 and data["forged"] == 0
    assert worst == data["room_direct_min"]
    assert "room/direct" in (tmp_path / "out" / "results.md").read_text()
