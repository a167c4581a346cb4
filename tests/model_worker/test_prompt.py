"""Prompt building: same cut, same context; budgets; cleanup."""

from __future__ import annotations

from model_worker.prompt import (
    build_prompt,
    clean_answer,
    context_window,
    flatten,
    speaks_for_others,
    stop_sequences,
)

from llmchat.llm.backends.base import estimate_tokens
from llmchat.models import Entry, EntryKind


def entry(i: int, author: str, text: str, kind: EntryKind = EntryKind.HUMAN) -> Entry:
    return Entry(id=f"{1000 + i}-0", room="r", msg_id=f"m{i}", kind=kind, author=author, text=text)


HISTORY = [
    entry(1, "alice", "hello all"),
    entry(2, "ada", "hi alice", EntryKind.MODEL),
    entry(3, "system", "note", EntryKind.SYSTEM),
    entry(4, "judge", "scores", EntryKind.JUDGE),
    entry(5, "carl", "hello alice, I am carl", EntryKind.MODEL),
    entry(6, "bob", "what is 2+2?"),
]


def test_two_models_get_the_same_window_framed_as_their_own_chat() -> None:
    """What is identical between two models' prompts for one turn: the window (the same
    entries, speakers and text in the same order, up to the cut), which `flatten` reads back
    from either prompt. What differs: the system message, and that each model's own lines are
    its assistant turns (no name) while everyone else's are user turns with the name."""
    a = build_prompt(
        name="ada", room="r", system_prompt="Be terse.", entries=HISTORY, budget_tokens=1000
    )
    c = build_prompt(name="carl", room="r", system_prompt="", entries=HISTORY, budget_tokens=1000)
    window = [
        "alice: hello all",
        "ada: hi alice",
        "carl: hello alice, I am carl",
        "bob: what is 2+2?",
    ]
    assert flatten(a, "ada") == flatten(c, "carl") == window
    assert a[0].role == c[0].role == "system" and a[0] != c[0]
    assert "Be terse." in a[0].content and "ada" in a[0].content and "carl" in c[0].content
    assert [(m.role, m.content) for m in a[1:]] == [
        ("user", "alice: hello all"),
        ("assistant", "hi alice"),
        ("user", "carl: hello alice, I am carl"),
        ("user", "bob: what is 2+2?"),  # the message being answered: a turn of its own
    ]
    assert [(m.role, m.content) for m in c[1:]] == [
        ("user", "alice: hello all\nada: hi alice"),
        ("assistant", "hello alice, I am carl"),
        ("user", "bob: what is 2+2?"),
    ]
    # system notes and verdicts reach no model
    assert not any("note" in m.content or "scores" in m.content for m in a + c)


def test_the_window_does_not_depend_on_the_model() -> None:
    """Trimmed to a budget, two models still see the same lines: the window is measured with
    a shared estimate, not with either model's tokenizer."""
    long = [
        entry(i, "ada" if i % 3 == 0 else "alice", f"message {i} " + "word " * (i % 7), kind)
        for i in range(80)
        for kind in [EntryKind.MODEL if i % 3 == 0 else EntryKind.HUMAN]
    ]
    window = context_window(long, 300)
    assert 1 < len(window) < 80 and window[-1].entry_id == long[-1].id
    for name in ("ada", "carl", "dora"):
        msgs = build_prompt(name=name, room="r", system_prompt="", entries=long, budget_tokens=300)
        assert flatten(msgs, name) == [line.rendered() for line in window]
        assert msgs[1].role == "user"  # chat templates expect a user turn first
        assert msgs[-1].role == "user" and msgs[-1].content.endswith(long[-1].text.strip())


def test_an_own_answer_that_opens_a_trimmed_window_is_shown_with_its_name() -> None:
    msgs = build_prompt(
        name="ada", room="r", system_prompt="", entries=HISTORY[1:], budget_tokens=1000
    )
    assert [m.role for m in msgs] == ["system", "user", "user"]
    assert msgs[1].content.startswith("ada: hi alice\n")


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
    total = sum(estimate_tokens(m.content) for m in msgs[1:])
    assert total <= 200
    assert msgs[-1].content.endswith("message number 49 " + "x" * 40)
    assert "message number 0 " not in msgs[-1].content


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


def test_clean_answer_strips_its_own_name_prefix() -> None:
    assert clean_answer("  ada: Four.  ", "ada") == "Four."
    assert clean_answer("Ada: ok", "ada") == "ok"
    assert clean_answer("**ada:** ok", "ada") == "ok"
    assert clean_answer("adam: ok", "ada") == "adam: ok"


def test_clean_answer_drops_control_characters_and_escapes() -> None:
    assert clean_answer("\x1b[31mred\x1b[0m\x00 text\x07", "ada") == "red text"
    assert clean_answer("line one\nline two\ttab", "ada") == "line one\nline two\ttab"
    assert clean_answer("\x00\x01", "ada") == ""


def test_an_answer_stops_where_it_speaks_for_someone_else() -> None:
    speakers = {"alice", "sprout", "smol", "qe04f8031"}
    raw = "The primary colour is red.\nsprout: The primary colour is red"
    assert clean_answer(raw, "smol", speakers) == "The primary colour is red."
    assert speaks_for_others(raw, "smol", speakers)
    # the forms seen from small models: markdown around the name, role labels, mid-answer
    for forged in (
        "Sure.\n*sprout: No, no. No way. I'm a human.",
        "Sure.\n**Alice**: thanks!",
        "Sure.\nqe04f8031: The answer to this question is",
        "Sure.\nUser: and what about Spain?",
        "Sure.\n> alice: hi",
    ):
        assert clean_answer(forged, "smol", speakers) == "Sure.", forged
        assert speaks_for_others(forged, "smol", speakers), forged
    # an answer that opens as someone else is nothing of its own: cut to empty (reported)
    assert clean_answer("alice: The primary colour is red.", "smol", speakers) == ""
    assert clean_answer("smol: sprout: hi there", "smol", speakers) == ""
    # ordinary text that merely mentions a name, or its own name, is kept
    for fine in ("Alice asked: fine", "As sprout said: yes", "smol: all good", "Note: 4"):
        assert not speaks_for_others(fine, "smol", speakers), fine
    assert clean_answer("Alice asked: fine", "smol", speakers) == "Alice asked: fine"


def test_stop_sequences_name_every_other_speaker_and_the_role_labels() -> None:
    stops = stop_sequences({"bob", "alice", "ada"}, "ada")
    assert stops[:2] == ["\nalice:", "\nbob:"]
    assert "\nada:" not in stops and "\nUser:" in stops and "\nAssistant:" in stops
    assert len(stop_sequences({f"user{i}" for i in range(40)}, "ada")) == 16
