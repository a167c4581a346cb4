"""Prompt building: same cut, same context; budgets; cleanup."""

from __future__ import annotations

from model_worker.backends.base import estimate_tokens
from model_worker.prompt import build_prompt, clean_answer, stop_sequences

from llmchat.models import Entry, EntryKind


def entry(i: int, author: str, text: str, kind: EntryKind = EntryKind.HUMAN) -> Entry:
    return Entry(id=f"{1000 + i}-0", room="r", msg_id=f"m{i}", kind=kind, author=author, text=text)


HISTORY = [
    entry(1, "alice", "hello all"),
    entry(2, "ada", "hi alice", EntryKind.MODEL),
    entry(3, "system", "note", EntryKind.SYSTEM),
    entry(4, "judge", "scores", EntryKind.JUDGE),
    entry(5, "bob", "what is 2+2?"),
]


def test_two_models_get_identical_prompts_apart_from_the_system_message() -> None:
    a = build_prompt(
        name="ada",
        room="r",
        system_prompt="Be terse.",
        entries=HISTORY,
        budget_tokens=1000,
        count_tokens=estimate_tokens,
    )
    b = build_prompt(
        name="bob",
        room="r",
        system_prompt="",
        entries=HISTORY,
        budget_tokens=1000,
        count_tokens=estimate_tokens,
    )
    assert a[0] != b[0]
    assert a[1:] == b[1:]
    assert "Be terse." in a[0].content and "ada" in a[0].content
    assert a[1].content == "alice: hello all\nada: hi alice\nbob: what is 2+2?"


def test_budget_keeps_the_newest_entries() -> None:
    long = [entry(i, "alice", f"message number {i} " + "x" * 40) for i in range(50)]
    msgs = build_prompt(
        name="ada",
        room="r",
        system_prompt="",
        entries=long,
        budget_tokens=200,
        count_tokens=estimate_tokens,
    )
    total = sum(estimate_tokens(m.content) for m in msgs)
    assert total <= 200 + 10
    assert msgs[1].content.endswith("message number 49 " + "x" * 40)
    assert "message number 0 " not in msgs[1].content


def test_an_oversized_newest_message_is_cut_not_dropped() -> None:
    msgs = build_prompt(
        name="ada",
        room="r",
        system_prompt="",
        entries=[entry(1, "al", "y" * 5000)],
        budget_tokens=300,
        count_tokens=estimate_tokens,
    )
    # the cut keeps the author's name: the start of the line is the message's, not the name
    assert msgs[1].content.startswith("al: …") and msgs[1].content.endswith("y")
    assert estimate_tokens(msgs[1].content) <= 300


def test_clean_answer_strips_name_prefix() -> None:
    assert clean_answer("  ada: Four.  ", "ada") == "Four."
    assert clean_answer("Ada: ok", "ada") == "ok"
    assert clean_answer("adam: ok", "ada") == "adam: ok"


def test_clean_answer_drops_control_characters_and_escapes() -> None:
    assert clean_answer("\x1b[31mred\x1b[0m\x00 text\x07", "ada") == "red text"
    assert clean_answer("line one\nline two\ttab", "ada") == "line one\nline two\ttab"
    assert clean_answer("\x00\x01", "ada") == ""


def test_echoed_transcript_lines_are_removed() -> None:
    speakers = {"alice", "sprout", "smol"}
    raw = "alice: The primary colour is red.\nsprout: The primary colour is red"
    assert clean_answer(raw, "smol", speakers) == "The primary colour is red."
    assert clean_answer("smol: sprout: hi there", "smol", speakers) == "hi there"
    assert clean_answer("Alice asked: fine", "smol", speakers) == "Alice asked: fine"


def test_stop_sequences_name_each_speaker() -> None:
    assert stop_sequences({"bob", "alice"}) == ["\nalice:", "\nbob:"]
