"""Judging methods behind one interface: each turns a round's answers into per-model scores.

* ``rubric``: the judge writes a JSON verdict (scores 1-10 for every answer at once), parsed
  strictly and retried; ``passes`` orders (shuffled, then reversed, ...) averaged.
* ``grade``: one answer at a time, "is this reply correct, relevant and appropriate?", read as
  P(yes) from the judge's token probabilities; score = 1 + 9·P(yes). It never sees two
  answers together, so there is no position to be biased by.
* ``reference``: as ``grade``, with a reference answer in the prompt: the room's, when it
  supplies one, else the judge's own (greedy, short), written first.
* ``pairwise``: every pair of answers in both orders, "which is better, A or B?", read as P(A);
  a win counts only when both orders agree, otherwise the pair is a tie.

Every method quotes and anonymises the answers (``rubric.quote``, labels by position only),
caps an answer that addresses the judge (``rubric.aggregate``), and never turns an unreadable
verdict into a score: a rubric verdict that does not parse is retried, a probability reading
whose allowed words are unlikely is refused (``grading.read_choice``), and a round without a
valid verdict fails visibly (``JudgeFailedError``).
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import ClassVar

from judge.grading import (
    A_OR_B,
    REFERENCE_TOKENS,
    YES_NO,
    grade_messages,
    grade_reason,
    mean,
    pair_messages,
    read_choice,
    reference_messages,
    score_of,
)
from judge.rubric import (
    Candidate,
    Scored,
    VerdictParseError,
    aggregate,
    build_messages,
    labels,
    parse_verdict,
    shuffled,
)
from judge.scorers import Scorer
from llmchat.logs import get_logger
from llmchat.ratings import outcome

log = get_logger(__name__)


class JudgeFailedError(RuntimeError):
    def __init__(self, message: str, parse_failures: int) -> None:
        super().__init__(message)
        self.parse_failures = parse_failures


@dataclass(frozen=True)
class RoundInput:
    context: str
    candidates: list[Candidate]
    seed: str
    passes: int
    retries: int
    on_parse_failure: Callable[[], object] | None = None
    before_retry: Callable[[], Awaitable[None]] | None = None
    #: a correct answer the room supplies (the ``reference`` method then writes none)
    reference: str | None = None


@dataclass(frozen=True)
class Judgement:
    scored: list[Scored]
    parse_failures: int
    #: the reference the ``reference`` method graded against
    reference: str | None = None


class Method(abc.ABC):
    name: ClassVar[str]
    #: True when the judge sees several answers at once (so their order can sway it)
    sees_several: ClassVar[bool]

    @abc.abstractmethod
    def calls(self, answers: int, passes: int) -> int:
        """Judge-model calls a round takes up front (the rate limit's cost)."""

    @abc.abstractmethod
    async def judge(self, scorer: Scorer, rnd: RoundInput) -> Judgement:
        """Scores for every candidate, or JudgeFailedError."""


def _failed(rnd: RoundInput, exc: VerdictParseError, failures: int) -> None:
    if rnd.on_parse_failure:
        rnd.on_parse_failure()
    log.warning("judge_parse_failure", error=str(exc), failures=failures)


class Rubric(Method):
    name = "rubric"
    sees_several = True

    def calls(self, answers: int, passes: int) -> int:
        return passes

    async def judge(self, scorer: Scorer, rnd: RoundInput) -> Judgement:
        order = shuffled(rnd.candidates, rnd.seed)
        orders = [order, list(reversed(order)), order[1:] + order[:1], order[-1:] + order[:-1]]
        results = []
        failures = 0
        for ordered in orders[: rnd.passes]:
            messages = build_messages(rnd.context, ordered)
            for attempt in range(rnd.retries):
                if attempt and rnd.before_retry is not None:
                    await rnd.before_retry()
                raw = await scorer.complete(messages, len(ordered), attempt)
                try:
                    verdict = parse_verdict(raw, len(ordered), [c.text for c in ordered])
                    results.append((ordered, verdict))
                    break
                except VerdictParseError as exc:
                    failures += 1
                    _failed(rnd, exc, failures)
                    log.debug("judge_raw_output", attempt=attempt, raw=raw[:200])
            else:
                raise JudgeFailedError(f"no valid verdict after {rnd.retries} attempts", failures)
        return Judgement(aggregate(rnd.candidates, results), failures)


class Grade(Method):
    """One answer at a time; the verdict is P(yes), read from token probabilities.

    A refused reading is not retried: the local judge reads deterministically, so a second
    reading would say the same; the round fails visibly instead.
    """

    name = "grade"
    sees_several = False

    def calls(self, answers: int, passes: int) -> int:
        return 1

    async def _reference(self, scorer: Scorer, rnd: RoundInput) -> str | None:
        return None

    async def judge(self, scorer: Scorer, rnd: RoundInput) -> Judgement:
        scorer.new_round()
        reference = await self._reference(scorer, rnd)
        order = shuffled(rnd.candidates, rnd.seed)
        prompts = [grade_messages(rnd.context, c.text, reference) for c in order]
        logprobs = await scorer.choice_logprobs(prompts, YES_NO)
        verdict = {}
        for label, lp in zip(labels(len(order)), logprobs, strict=True):
            try:
                reading = read_choice(lp, "yes", "no")
            except VerdictParseError as exc:
                _failed(rnd, exc, 1)
                raise JudgeFailedError(str(exc), 1) from exc
            verdict[label] = (score_of(reading.p), grade_reason(reading.p, reference is not None))
        return Judgement(aggregate(rnd.candidates, [(order, verdict)]), 0, reference)


class Reference(Grade):
    name = "reference"

    def calls(self, answers: int, passes: int) -> int:
        return 2

    async def _reference(self, scorer: Scorer, rnd: RoundInput) -> str | None:
        if rnd.reference is not None:
            return rnd.reference
        text = (await scorer.answer(reference_messages(rnd.context), REFERENCE_TOKENS)).strip()
        if not text:
            exc = VerdictParseError("the judge wrote an empty reference answer")
            _failed(rnd, exc, 1)
            raise JudgeFailedError(str(exc), 1)
        return text


class Pairwise(Method):
    """Every pair in both orders; a win only when both orders agree, else a tie.

    A candidate's score is 1 + 9 x its share of pair points (a win 1, a tie ½); its passes are
    its mean P(better) (as a score) in the first and in the swapped order, so the bench can
    measure how often the swap changes the judge's mind.
    """

    name = "pairwise"
    sees_several = True

    def calls(self, answers: int, passes: int) -> int:
        return answers * (answers - 1)

    async def judge(self, scorer: Scorer, rnd: RoundInput) -> Judgement:
        scorer.new_round()
        order = shuffled(rnd.candidates, rnd.seed)
        pairs = list(itertools.combinations(range(len(order)), 2))
        prompts = []
        for i, j in pairs:
            prompts.append(pair_messages(rnd.context, order[i].text, order[j].text))
            prompts.append(pair_messages(rnd.context, order[j].text, order[i].text))
        logprobs = await scorer.choice_logprobs(prompts, A_OR_B)
        points = [0.0] * len(order)
        # P(better) of each candidate in the first and in the swapped order of its pairings
        first: list[list[float]] = [[] for _ in order]
        swapped: list[list[float]] = [[] for _ in order]
        for k, (i, j) in enumerate(pairs):
            try:
                forward = read_choice(logprobs[2 * k], "A", "B").p  # P(i better), i shown as A
                backward = read_choice(logprobs[2 * k + 1], "B", "A").p  # P(i better), i as B
            except VerdictParseError as exc:
                _failed(rnd, exc, 1)
                raise JudgeFailedError(str(exc), 1) from exc
            first[i].append(forward)
            first[j].append(1 - forward)
            swapped[i].append(backward)
            swapped[j].append(1 - backward)
            # each order's own verdict, read as the ratings read scores (close = a tie)
            one = outcome(score_of(forward), score_of(1 - forward))
            two = outcome(score_of(backward), score_of(1 - backward))
            won = one if one == two else 0.5
            points[i] += won
            points[j] += 1 - won
        others = max(1, len(order) - 1)
        verdict = {
            label: (score_of(points[k] / others), f"won {points[k]:g} of {others} in both orders")
            for k, label in enumerate(labels(len(order)))
        }
        passes = {
            c.model: [score_of(mean(first[k])), score_of(mean(swapped[k]))]
            for k, c in enumerate(order)
        }
        scored = aggregate(rnd.candidates, [(order, verdict)])
        return Judgement([replace(s, passes=passes[s.model]) for s in scored], 0)


METHODS: dict[str, Method] = {m.name: m for m in (Rubric(), Grade(), Reference(), Pairwise())}
