"""What a verdict says, built by pure functions: the context the judge reads, the scoring of a
round by one judging method, the verdict's text and meta, and the scores a stored verdict holds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from judge.methods import METHODS, Judgement, RoundInput
from judge.rubric import Candidate
from judge.scorers import Scorer
from llmchat.llm.text import fold_lines, speaker
from llmchat.models import Entry, EntryKind

#: Messages of the conversation the judge reads before the answers.
CONTEXT_ENTRIES = 6


async def score_round(
    scorer: Scorer,
    *,
    context: str,
    candidates: list[Candidate],
    seed: str,
    passes: int,
    retries: int,
    method: str = "rubric",
    on_parse_failure: Callable[[], object] | None = None,
    before_retry: Callable[[], Awaitable[None]] | None = None,
    reference: str | None = None,
) -> Judgement:
    """Score ``candidates`` with one judging method (``judge.methods``); the method quotes and
    anonymises them, parses strictly and raises JudgeFailedError rather than guess a score.

    ``before_retry`` is awaited before each retry's model call (the rate limit: it raises
    :class:`RateLimitedError` when the room has no call left). ``reference``: a correct answer
    the room supplies, for the ``reference`` method.
    """
    return await METHODS[method].judge(
        scorer,
        RoundInput(
            context=context,
            candidates=candidates,
            seed=seed,
            passes=passes,
            retries=retries,
            on_parse_failure=on_parse_failure,
            before_retry=before_retry,
            reference=reference,
        ),
    )


def render_context(entries: list[Entry]) -> str:
    """The conversation the answers replied to, one speaker line per message (a message's
    further lines indented, as in the models' prompts, so none can pose as a speaker)."""
    lines = [
        f"{speaker(e.author)}: {fold_lines(e.text)}"
        for e in entries
        if e.kind in (EntryKind.HUMAN, EntryKind.MODEL)
    ]
    return "\n".join(lines[-CONTEXT_ENTRIES:])


def verdict_text(judgement: Judgement) -> str:
    """``Verdict: ada 8.0/10 — reason; bob ...``, best first."""
    ranked = sorted(judgement.scored, key=lambda s: -s.score)
    return "Verdict: " + "; ".join(
        f"{s.model} {s.score:.1f}/10 — {s.reason or 'no reason given'}" for s in ranked
    )


def verdict_meta(
    judgement: Judgement, *, cut: str, judge: str, method: str, latency_s: float
) -> dict[str, Any]:
    """The stored verdict's meta: every score, reason and pass, what was flagged, how long."""
    scored = judgement.scored
    meta: dict[str, Any] = {
        "round": cut,
        "cut": cut,
        "outcome": "scored",
        "judge": judge,
        "method": method,
        "scores": {s.model: s.score for s in scored},
        "reasons": {s.model: s.reason for s in scored},
        "passes": {s.model: s.passes for s in scored},
        "lengths": {s.model: s.length for s in scored},
        "flagged": [s.model for s in scored if s.flagged],
        "parse_failures": judgement.parse_failures,
        "latency_s": round(latency_s, 3),
    }
    if judgement.reference is not None:
        meta["reference"] = judgement.reference
    return meta


def stored_scores(verdict: Entry) -> dict[str, float]:
    """The scores a stored verdict records (none unless the judge wrote a scored verdict)."""
    scores = verdict.meta.get("scores") if verdict.kind == EntryKind.JUDGE else None
    if verdict.author != "judge" or not isinstance(scores, dict):
        return {}
    return {str(m): float(v) for m, v in scores.items() if isinstance(v, int | float)}
