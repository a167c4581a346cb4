"""The election bench's pure part: the judged rounds a live room produced, replayed per seed
in a shuffled order with the room's own rating and hand-over rules; when the better model came
to lead, whether the leader is settled, how often the judge agreed with the truth."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmchat.election import confidently_better
from llmchat.ratings import Rating, outcome


@dataclass
class JudgedRound:
    q: str
    scores: dict[str, float]
    #: each answer right by the question's ``any`` strings (the ground truth the judge never sees)
    right: dict[str, bool]
    answers: dict[str, str]


@dataclass
class SeedRun:
    seed: int
    room: str
    order: list[str]
    leaders: list[str | None] = field(default_factory=list)
    rounds: list[JudgedRound] = field(default_factory=list)
    unjudged: int = 0
    rounds_to_lead: int | None = None
    settled: bool = False
    ratings: dict[str, dict[str, Any]] = field(default_factory=dict)


def rounds_to_lead(leaders: Sequence[str | None], better: str) -> int | None:
    """The judged round (1-based) from which ``better`` led to the end; None if it did not."""
    if not leaders or leaders[-1] != better:
        return None
    k = len(leaders)
    while k > 0 and leaders[k - 1] == better:
        k -= 1
    return k + 1


def replay(
    rounds: Sequence[JudgedRound], order: Sequence[str], better: str, seed: int, max_rounds: int
) -> SeedRun:
    """One seed: the judged ``rounds`` in the seed's order, folded into fresh ratings with the
    room's rating and election functions; ``order[0]`` leads first (pure)."""
    from llmchat.election import ElectionPolicy, should_hand_over  # noqa: PLC0415
    from llmchat.ratings import update  # noqa: PLC0415

    run = SeedRun(seed=seed, room="replay", order=list(order))
    shuffled = list(rounds)
    random.Random(seed).shuffle(shuffled)
    policy = ElectionPolicy(min_tenure_s=0.0)
    ratings: dict[str, Rating] = {}
    leader = order[0]
    for r in shuffled[:max_rounds]:
        ratings = update(ratings, {m: r.scores[m] for m in order if m in r.scores})
        leader = (
            should_hand_over(
                leader=leader,
                models=list(order),
                ratings=ratings,
                healthy=set(order),
                tenure_s=float("inf"),
                policy=policy,
            )
            or leader
        )
        run.rounds.append(r)
        run.leaders.append(leader)
    # no stop once settled: a settled leader can still be overtaken later, and replayed
    # rounds cost nothing
    run.settled = settled(ratings, leader)
    run.ratings = {m: x.model_dump(exclude={"versus"}) for m, x in ratings.items()}
    run.rounds_to_lead = rounds_to_lead(run.leaders, better)
    return run


@dataclass
class Agreement:
    """The judge against the ground truth (the ``any`` strings), over the contestants' rounds."""

    #: rounds where exactly the model was right: (judged for it, rounds)
    only_right: dict[str, tuple[int, int]]
    #: rounds where both were right or both wrong: wins per model, and ties
    same_wins: dict[str, int]
    same_ties: int

    @property
    def same_rounds(self) -> int:
        return sum(self.same_wins.values()) + self.same_ties


def agreement(rounds: Sequence[JudgedRound], a: str, b: str) -> Agreement:
    """How the judge's verdicts line up with which answers were right (pure). Where only one
    answer is right the judge should pick it; where both are right (or both wrong) a judge
    without bias splits its wins evenly: a lean there towards one model is its preference."""
    only = {a: [0, 0], b: [0, 0]}
    wins = {a: 0, b: 0}
    ties = 0
    for r in rounds:
        if a not in r.scores or b not in r.scores or a not in r.right or b not in r.right:
            continue
        res = outcome(r.scores[a], r.scores[b])
        if r.right[a] != r.right[b]:
            winner = a if r.right[a] else b
            only[winner][1] += 1
            only[winner][0] += res == (1.0 if winner == a else 0.0)
        elif res == 0.5:
            ties += 1
        else:
            wins[a if res == 1.0 else b] += 1
    return Agreement({m: (v[0], v[1]) for m, v in only.items()}, wins, ties)


def leader_changes(leaders: Sequence[str | None], initial: str | None) -> int:
    """How often the leader changed, from ``initial`` through ``leaders`` (gaps ignored)."""
    changes = 0
    current = initial
    for leader in leaders:
        if leader is None:
            continue
        if current is not None and leader != current:
            changes += 1
        current = leader
    return changes


def settled(ratings: Mapping[str, Rating], leader: str | None) -> bool:
    """The leader is better with confidence than every other model: no change can follow soon."""
    if leader is None or leader not in ratings:
        return False
    return all(confidently_better(ratings[leader], r) for m, r in ratings.items() if m != leader)


def room_name(model: str, suffix: str) -> str:
    """A model's name in the bench's rooms: its registry name, made a valid model name."""
    base = re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")[:30].strip("-") or "model"
    return f"{base}-{suffix}"
