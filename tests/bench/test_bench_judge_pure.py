"""The judge and election benchmarks' pure parts: the pairs format, the figures, the counts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from llmchat_tools.bench.election_replay import (
    JudgedRound,
    agreement,
    leader_changes,
    replay,
    room_name,
    rounds_to_lead,
    settled,
)
from llmchat_tools.bench.judge_pairs import (
    DATA,
    DEFAULT_PAIRS,
    Pair,
    PairFileError,
    conversation,
    good_first,
    load_pairs,
)
from llmchat_tools.bench.judge_scores import (
    PairResult,
    cohen_kappa,
    last_line,
    pass_verdicts,
    summarise,
)

from llmchat.ratings import Rating, update


def write(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines), encoding="utf-8"
    )
    return path


def test_a_valid_file_loads_with_optional_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"q": "2+2?", "good": "4", "bad": "Five, because two and two make five."},
        "",
        {"q": "Capital?", "good": "Paris", "bad": "Lyon", "context": "alice: hi", "tag": "fact"},
        {"q": "x", "good": "y", "bad": "z", "reference": "y"},
    )
    pairs = load_pairs(path)
    assert [p.q for p in pairs] == ["2+2?", "Capital?", "x"]
    assert pairs[0].length_trap and not pairs[0].long_good
    assert pairs[1].context == "alice: hi" and pairs[1].tag == "fact"
    assert pairs[2].reference == "y"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected an object"),
        ({"q": "x", "good": "y"}, "'bad' must be a non-empty string"),
        ({"q": "x", "good": "", "bad": "z"}, "'good' must be a non-empty string"),
        ({"q": 3, "good": "y", "bad": "z"}, "'q' must be a non-empty string"),
        ({"q": "x", "good": "y", "bad": "z", "score": 3}, "unknown field"),
        ({"q": "x", "good": "y", "bad": "y"}, "the same answer"),
        ({"q": "x", "good": "y", "bad": "z", "context": 5}, "'context' must be"),
    ],
)
def test_bad_lines_are_named_with_their_line_number(
    tmp_path: Path, line: object, words: str
) -> None:
    path = write(tmp_path, {"q": "ok", "good": "a", "bad": "b"}, line)
    with pytest.raises(PairFileError, match=r":2: ") as info:
        load_pairs(path)
    assert any(w in str(info.value) for w in words.split("|"))


def test_empty_or_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PairFileError, match="no pairs"):
        load_pairs(write(tmp_path, "", "  "))
    with pytest.raises(PairFileError, match="cannot read"):
        load_pairs(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("name", ["judge_pairs.jsonl", "judge_pairs_heldout.jsonl"])
def test_the_committed_sets_are_valid_and_cover_what_the_issue_asks(name: str) -> None:
    pairs = load_pairs(DATA / name)
    assert len(pairs) >= 40
    tags = {p.tag for p in pairs}
    assert {"fact", "arithmetic", "instruction", "relevance", "tone"} <= tags
    assert sum(p.length_trap for p in pairs) >= 10  # long wrong answers
    assert sum(p.long_good for p in pairs) >= 10  # and long right ones
    assert any(p.context for p in pairs)


def test_the_sets_do_not_share_questions() -> None:
    dev = {p.q for p in load_pairs(DEFAULT_PAIRS)}
    held = {p.q for p in load_pairs(DATA / "judge_pairs_heldout.jsonl")}
    assert len(dev) >= 60 and not dev & held


def test_context_lines_become_speakers_and_the_question_comes_last() -> None:
    pair = Pair(q="Which city?", good="a", bad="b", context="alice: going to Japan\nno name here")
    entries = conversation(pair)
    assert [(e.author, e.text) for e in entries] == [
        ("alice", "going to Japan"),
        ("user", "no name here"),
        ("user", "Which city?"),
    ]


def test_the_coin_is_fixed_and_fair_enough() -> None:
    pairs = load_pairs(DEFAULT_PAIRS)
    coins = [good_first(i, p) for i, p in enumerate(pairs)]
    assert coins == [good_first(i, p) for i, p in enumerate(pairs)]
    assert 0.3 < sum(coins) / len(coins) < 0.7


def result(
    i: int, verdict: str, passes: list[str], *, trap: bool = False, secs: float = 1.0
) -> PairResult:
    return PairResult(
        index=i,
        tag="fact" if i % 2 else "tone",
        good_first=i % 2 == 0,
        verdict=verdict,
        pass_verdicts=passes,
        score_good=8,
        score_bad=2,
        seconds=secs,
        length_trap=trap,
        long_good=False,
    )


def test_the_summary_counts_ties_as_no_win_and_measures_the_swap() -> None:
    results = [
        result(0, "good", ["good", "good"], trap=True),
        result(1, "good", ["good", "tie"], trap=True),
        result(2, "tie", ["good", "bad"]),
        result(3, "bad", ["bad", "bad"], trap=True, secs=3.0),
    ]
    s = summarise("rubric", results, sees_several=True)
    assert (s.right, s.ties, s.wrong, s.failed) == (2, 1, 1, 0)
    assert s.accuracy == 0.5 and s.swap_consistency == 0.5
    assert math.isclose(s.length_trap, 2 / 3) and s.length_trap_n == 3
    assert s.seconds_per_verdict == 1.5
    assert s.by_tag == {"tone": (1, 2), "fact": (1, 2)}
    assert summarise("grade", results, sees_several=False).swap_consistency == 1.0
    line = last_line(s)
    assert (
        line == "accuracy 0.500 length_trap 0.667 swap_consistency 0.500 seconds_per_verdict 1.50"
    )


def test_pass_verdicts_read_each_order_as_the_ratings_would() -> None:
    assert pass_verdicts([9.0, 5.0], [2.0, 5.1]) == ["good", "tie"]
    assert pass_verdicts([2.0], [9.0]) == ["bad"]


def test_kappa() -> None:
    assert cohen_kappa(["first", "second"] * 5, ["first", "second"] * 5) == 1.0
    assert math.isclose(cohen_kappa(["first", "second"] * 5, ["second", "first"] * 5), -1.0)
    assert cohen_kappa(["first", "second"] * 5, ["tie"] * 10) == 0.0
    # 3 of 4 agree, labels and verdicts balanced: (0.75 - 0.5) / 0.5
    assert math.isclose(
        cohen_kappa(
            ["first", "second", "first", "second"], ["first", "second", "second", "second"]
        ),
        0.5,
    )


def test_rounds_to_lead_and_leader_changes() -> None:
    assert rounds_to_lead(["a", "a", "b", "b"], "b") == 3
    assert rounds_to_lead(["b", "a", "b"], "b") == 3
    assert rounds_to_lead(["b", "b"], "b") == 1
    assert rounds_to_lead(["b", "a"], "b") is None and rounds_to_lead([], "b") is None
    assert leader_changes(["a", "a", "b", None, "b", "a"], "a") == 2
    assert leader_changes(["b"], "a") == 1 and leader_changes([], "a") == 0


def test_settled_means_confidently_ahead_of_every_other() -> None:
    ratings: dict[str, Rating] = {}
    assert not settled(ratings, "b")
    ratings = update(ratings, {"a": 2, "b": 9})
    assert not settled(ratings, "b")
    for _ in range(10):
        ratings = update(ratings, {"a": 2, "b": 9})
    assert settled(ratings, "b") and not settled(ratings, "a")


def test_room_names_are_valid_model_names() -> None:
    assert room_name("qwen2.5-coder-0.5b", "b") == "qwen2-5-coder-0-5b-b"
    assert room_name("/x/My Model.gguf", "a") == "x-my-model-gguf-a"


def test_agreement_splits_the_judge_against_the_truth() -> None:
    def rnd(sq: float, ss: float, rq: bool, rs: bool) -> JudgedRound:
        return JudgedRound(q="q", scores={"q": sq, "s": ss}, right={"q": rq, "s": rs}, answers={})

    rounds = [
        rnd(9, 2, True, False),  # only q right, judge agrees
        rnd(2, 9, True, False),  # only q right, judge disagrees
        rnd(3, 8, False, True),  # only s right, judge agrees
        rnd(9, 9, True, True),  # both right: a tie
        rnd(9, 7, True, True),  # both right: q preferred
        rnd(2, 4, False, False),  # both wrong: s preferred
    ]
    ag = agreement(rounds, "q", "s")
    assert ag.only_right == {"q": (1, 2), "s": (1, 1)}
    assert ag.same_wins == {"q": 1, "s": 1} and ag.same_ties == 1 and ag.same_rounds == 3


def test_a_seed_replays_the_judged_rounds_in_its_own_order_with_the_room_rules() -> None:
    def rnd(i: int, weak: float, strong: float) -> JudgedRound:
        return JudgedRound(q=f"q{i}", scores={"w": weak, "s": strong}, right={}, answers={})

    # the stronger model wins 8 of 10 rounds, the weaker 2
    rounds = [rnd(i, 2, 9) for i in range(8)] + [rnd(8, 9, 2), rnd(9, 9, 2)]
    runs = [replay(rounds, ["w", "s"], "s", seed, 10) for seed in range(5)]
    orders = {tuple(r.q for r in run.rounds) for run in runs}
    assert len(orders) > 1  # the seeds differ in the order of the rounds
    for run in runs:
        assert run.order == ["w", "s"] and len(run.leaders) == len(run.rounds) <= 10
        assert run.leaders[0] == "w" or run.leaders[0] == "s"
        # the leader changes only when the challenger is better with confidence (never back)
        assert leader_changes(run.leaders, "w") <= 1
        assert run.rounds_to_lead is not None and run.rounds_to_lead == rounds_to_lead(
            run.leaders, "s"
        )
        assert run.settled == settled(
            {m: Rating.model_validate(v) for m, v in run.ratings.items()}, run.leaders[-1]
        )
