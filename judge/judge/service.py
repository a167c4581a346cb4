"""The judge service: active/standby on a lease; scores each round once; updates ratings.

Rounds come from each room's ``rounds`` stream (consumer group ``judges``). Only the lease
holder reads them; a standby that takes the lease over claims every round the old holder left
pending, and the verdict is written with the judge lease as a fence, so a deposed judge cannot
publish one.

Judge-model calls are capped per room (``judge_calls_per_minute``, a token bucket in Redis
shared by the replicas). A round over the limit is deferred, not dropped: it stays pending in
the stream (a judge that takes over claims it) and waits in a per-room queue, in order, until
the bucket has refilled; only a round deferred longer than ``judge_defer_max_s`` is skipped,
with a system note in the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from judge import metrics
from judge.methods import METHODS, JudgeFailedError, Judgement, RoundInput
from judge.rubric import Candidate
from judge.scorers import Scorer, ScorerError
from judge.settings import JudgeSettings
from llmchat import keys
from llmchat.ids import parse_stream_id, server_id_kind, server_msg_id
from llmchat.leadership import Leadership
from llmchat.lease import LeaseRecord, lease_key
from llmchat.lease_select import make_lease
from llmchat.llm.text import fold_lines, speaker
from llmchat.logs import get_logger
from llmchat.models import Entry, EntryKind, NewEntry
from llmchat.ratelimit import Limit, RateLimitedError, RateLimiter
from llmchat.ratings import RatingStore
from llmchat.redact import redact_url
from llmchat.redis_conn import UNAVAILABLE_ERRORS
from llmchat.router import Fence, FencedError, PostResult, Router
from llmchat.tasks import stop_task
from llmchat.timeline import Timeline

log = get_logger(__name__)
GROUP = "judges"
CONTEXT_ENTRIES = 6
#: Rate-limit scope of judge-model calls (one bucket per room).
LIMIT_SCOPE = "judge"


@dataclass(frozen=True)
class Round:
    room: str
    job_id: str
    cut: str
    models: list[str]
    enqueued_at: float


@dataclass
class Deferred:
    """A round waiting for its room's judge-call bucket."""

    rnd: Round
    due: float  # time.monotonic() when to try again
    since: float  # time.monotonic() when first deferred


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


class JudgeService:
    def __init__(self, settings: JudgeSettings, redis: aioredis.Redis, scorer: Scorer) -> None:
        self.settings = settings
        self.redis = redis
        self.scorer = scorer
        self.timeline = Timeline(redis)
        self.router = Router(redis, self.timeline)
        self.ratings = RatingStore(redis)
        self.lease = make_lease(
            redis,
            name=settings.lease_name,
            redis_key=lease_key(settings.lease_name),
            duration_s=settings.lease_duration_s,
            namespace=settings.lease_namespace,
        )
        self.fence_key = lease_key(settings.lease_name)
        self.leadership = Leadership(
            self.lease,
            settings.consumer,
            settings.lease_timings,
            on_started=self._started,
            on_stopped=self._stopped,
            on_error=self._lease_error,
            errors=UNAVAILABLE_ERRORS,
        )
        self.judged = 0
        self._claim_all = False
        self.limiter = RateLimiter(redis)
        self.limit = Limit(settings.judge_calls_per_minute, settings.judge_calls_burst)
        #: per room, the rounds waiting for the judge-call limit, oldest first
        self.deferred: dict[str, list[Deferred]] = {}

    @property
    def term(self) -> int | None:
        return self.leadership.term

    @property
    def active(self) -> bool:
        return self.leadership.leading

    async def run(self, stop: asyncio.Event) -> None:
        for room in self.settings.rooms:
            with contextlib.suppress(aioredis.ResponseError):  # BUSYGROUP: already there
                await self.redis.xgroup_create(keys.rounds(room), GROUP, id="0", mkstream=True)
        holder = asyncio.create_task(self.leadership.run(stop), name="judge-lease")
        log.info(
            "judge_started",
            rooms=self.settings.rooms,
            scorer=self.scorer.name,
            consumer=self.settings.consumer,
            redis=redact_url(self.settings.redis_url),
        )
        try:
            while not stop.is_set():
                if not self.active:
                    self._forget_deferred()  # still pending in Redis: the new holder claims them
                    await asyncio.sleep(self.settings.lease_retry_s)
                    continue
                try:
                    await self._expire_deferred()
                    rounds = self._due_rounds() + await self._next_rounds()
                except UNAVAILABLE_ERRORS as exc:
                    log.warning("judge_redis_error", error=str(exc))
                    await asyncio.sleep(0.5)
                    continue
                for rnd in rounds:
                    await self.handle(rnd)
        finally:
            await stop_task(holder)
            await self.leadership.resign()

    def _started(self, got: LeaseRecord, _previous: LeaseRecord | None) -> None:
        self._claim_all = True
        metrics.ACTIVE.set(1)
        log.info("judge_active", term=got.term, consumer=self.settings.consumer)

    def _stopped(self, reason: str) -> None:
        if reason == "not-renewed":
            log.warning("judge_lease_lost", term=self.term)
        metrics.ACTIVE.set(0)

    def _lease_error(self, exc: Exception) -> None:
        log.warning("judge_lease_error", error=str(exc))
        metrics.ACTIVE.set(0)

    async def _next_rounds(self) -> list[Round]:
        rooms = self.settings.rooms
        if self._claim_all:  # take over what a previous judge left pending
            self._claim_all = False
            out: list[Round] = []
            for room in rooms:
                resp = await self.redis.xautoclaim(
                    keys.rounds(room), GROUP, self.settings.consumer, 0, "0-0", count=100
                )
                claimed = cast(list[tuple[str, dict[str, str] | None]], resp[1])
                out.extend(self._parse(room, jid, f) for jid, f in claimed if f)
            if out:
                log.info("judge_took_over_rounds", count=len(out))
                return out
        streams: dict[Any, Any] = {keys.rounds(r): ">" for r in rooms}
        fresh_resp: Any = await self.redis.xreadgroup(
            GROUP, self.settings.consumer, streams, count=10, block=250
        )
        by_key = {keys.rounds(r): r for r in rooms}
        out = []
        for stream, rows in cast(list[tuple[str, Any]], fresh_resp or []):
            out.extend(self._parse(by_key[str(stream)], jid, f) for jid, f in rows)
        return out

    @staticmethod
    def _parse(room: str, job_id: str, fields: dict[str, str]) -> Round:
        models = json.loads(fields.get("models", "[]"))
        return Round(
            room, job_id, fields["cut"], [str(m) for m in models], float(fields.get("ts", "0") or 0)
        )

    async def _answers(self, rnd: Round) -> dict[str, Entry]:
        """Wait until every model of the round answered or gave up, or the deadline passed."""
        deadline = rnd.enqueued_at + self.settings.round_deadline_s
        answers: dict[str, Entry] = {}
        while True:
            done: set[str] = set()
            cursor = rnd.cut
            while True:
                page = await self.timeline.read_after(rnd.room, cursor, 500)
                for e in page:
                    if e.meta.get("cut") == rnd.cut and e.author in rnd.models:
                        answers[e.author] = e
                    if (
                        e.kind == EntryKind.SYSTEM
                        # "err." is how workers named these before ids had their namespace
                        and (server_id_kind(e.msg_id) == "err" or e.msg_id.startswith("err."))
                        and e.meta.get("cut") == rnd.cut
                    ):
                        done.add(str(e.meta.get("model")))
                if len(page) < 500:
                    break
                cursor = page[-1].id
            if set(rnd.models) <= set(answers) | done or time.time() >= deadline:
                return answers
            await asyncio.sleep(0.3)

    # -- the judge-call limit ----------------------------------------------------------------
    async def handle(self, rnd: Round) -> None:
        """Judge ``rnd``, unless older rounds of its room wait for the limit: then it queues."""
        queue = self.deferred.setdefault(rnd.room, [])
        if queue and queue[0].rnd.job_id != rnd.job_id:
            if all(d.rnd.job_id != rnd.job_id for d in queue):
                self._defer(rnd, queue[0].due - time.monotonic())
            return
        await self.judge(rnd)

    def _defer(self, rnd: Round, retry_after: float) -> None:
        queue = self.deferred.setdefault(rnd.room, [])
        due = time.monotonic() + max(retry_after, 0.05)
        for d in queue:
            if d.rnd.job_id == rnd.job_id:
                d.due = due
                return
        queue.append(Deferred(rnd, due, time.monotonic()))
        metrics.RATE_LIMITED.labels(rnd.room).inc()
        metrics.DEFERRED.labels(rnd.room).set(len(queue))
        log.info(
            "judge_round_deferred",
            room=rnd.room,
            cut=rnd.cut,
            retry_after_s=round(retry_after, 2),
            waiting=len(queue),
            limit=self.limit.describe(),
        )

    def _done(self, rnd: Round) -> None:
        queue = self.deferred.get(rnd.room)
        if queue:
            queue[:] = [d for d in queue if d.rnd.job_id != rnd.job_id]
            metrics.DEFERRED.labels(rnd.room).set(len(queue))

    def _due_rounds(self) -> list[Round]:
        """The oldest deferred round of each room, once its wait is over."""
        now = time.monotonic()
        return [q[0].rnd for q in self.deferred.values() if q and q[0].due <= now]

    def _forget_deferred(self) -> None:
        for room, queue in self.deferred.items():
            queue.clear()
            metrics.DEFERRED.labels(room).set(0)

    async def _expire_deferred(self) -> None:
        """Skip, visibly, the rounds that waited for the limit longer than allowed."""
        now = time.monotonic()
        for queue in list(self.deferred.values()):
            for d in [d for d in queue if now - d.since >= self.settings.judge_defer_max_s]:
                rnd = d.rnd
                self._done(rnd)
                posted = await self._post(
                    rnd,
                    "The judge skipped this round: the room's judge limit "
                    f"({self.limit.describe()} model calls) kept it waiting for "
                    f"{now - d.since:.0f} s. No scores were recorded.",
                    meta={"round": rnd.cut, "outcome": "rate_limited"},
                    kind=EntryKind.SYSTEM,
                    fence=self._fence(),
                )
                if posted:  # else a deposed judge: the round stays pending for the new one
                    metrics.VERDICTS.labels(rnd.room, "rate_limited").inc()
                    log.warning("judge_round_expired", room=rnd.room, cut=rnd.cut)
                    await self._ack(rnd)

    def _fence(self) -> Fence | None:
        return Fence(self.fence_key, self.settings.consumer, self.term) if self.term else None

    async def _take_calls(self, room: str, calls: int) -> None:
        """Take ``calls`` judge-model calls from the room's bucket or raise RateLimitedError."""
        await self.limiter.check(LIMIT_SCOPE, room, self.limit, cost=calls)

    async def judge(self, rnd: Round) -> None:
        """Judge one round (or defer it when the room's judge-call limit is reached)."""
        try:
            await self._judge(rnd)
        except RateLimitedError as exc:
            self._defer(rnd, exc.retry_after)
            return
        self._done(rnd)

    async def _judge(self, rnd: Round) -> None:
        answers = await self._answers(rnd)
        started = time.monotonic()
        room = rnd.room
        fence = self._fence()
        if len(answers) < 2:
            await self._post(
                rnd,
                f"The judge skipped this round: {len(answers)} answer(s), nothing to compare.",
                meta={"round": rnd.cut, "outcome": "skipped"},
                kind=EntryKind.SYSTEM,
                fence=fence,
            )
            metrics.VERDICTS.labels(room, "skipped").inc()
            await self._ack(rnd)
            return
        context_entries = await self.timeline.read_until(room, rnd.cut, CONTEXT_ENTRIES)
        candidates = [Candidate(m, answers[m].text) for m in rnd.models if m in answers]
        method = self.settings.method
        # the round's calls up front, or RateLimitedError: defer
        await self._take_calls(
            room, METHODS[method].calls(len(candidates), self.settings.judge_passes)
        )
        try:
            judgement = await score_round(
                self.scorer,
                method=method,
                context=render_context(context_entries),
                candidates=candidates,
                seed=rnd.cut,
                passes=self.settings.judge_passes,
                retries=self.settings.judge_retries,
                on_parse_failure=metrics.PARSE_FAILURES.labels(room).inc,
                before_retry=lambda: self._take_calls(room, 1),
            )
        except (JudgeFailedError, ScorerError) as exc:
            fails = exc.parse_failures if isinstance(exc, JudgeFailedError) else 0
            await self._post(
                rnd,
                f"The judge could not score this round: {exc}. No scores were recorded.",
                meta={"round": rnd.cut, "outcome": "failed", "parse_failures": fails},
                kind=EntryKind.SYSTEM,
                fence=fence,
            )
            metrics.VERDICTS.labels(room, "failed").inc()
            await self._ack(rnd)
            return
        latency = time.monotonic() - started
        scored = judgement.scored
        scores = {s.model: s.score for s in scored}
        ranked = sorted(scored, key=lambda s: -s.score)
        text = "; ".join(
            f"{s.model} {s.score:.1f}/10 — {s.reason or 'no reason given'}" for s in ranked
        )
        meta = {
            "round": rnd.cut,
            "cut": rnd.cut,
            "outcome": "scored",
            "judge": self.scorer.name,
            "method": method,
            "scores": scores,
            "reasons": {s.model: s.reason for s in scored},
            "passes": {s.model: s.passes for s in scored},
            "lengths": {s.model: s.length for s in scored},
            "flagged": [s.model for s in scored if s.flagged],
            "parse_failures": judgement.parse_failures,
            "latency_s": round(latency, 3),
        }
        if judgement.reference is not None:
            meta["reference"] = judgement.reference
        posted = await self._post(
            rnd, f"Verdict: {text}", meta=meta, kind=EntryKind.JUDGE, fence=fence
        )
        if posted is None:
            return
        stored = posted.append.entry
        if posted.append.duplicate:
            # this round's verdict was stored before (this judge retried a round it had
            # scored, or another judge did): the ratings follow the stored verdict, once
            log.warning("verdict_duplicate", room=room, cut=rnd.cut, stored=stored.id)
            scores = _stored_scores(stored)
        new, applied = await self.ratings.apply(room, scores, round_id=rnd.cut)
        if not applied:
            await self._ack(rnd)
            return
        for s in scored:
            metrics.SCORES.labels(room, s.model).observe(s.score)
            if len(s.passes) > 1:
                metrics.POSITION_SHIFT.labels(room).observe(max(s.passes) - min(s.passes))
        for model, rating in new.items():
            metrics.RATING.labels(room, model).set(rating.rating)
            metrics.RATING_BOUND.labels(room, model).set((rating.high - rating.low) / 2)
        metrics.JUDGE_LATENCY.labels(room).observe(latency)
        metrics.VERDICTS.labels(room, "scored").inc()
        self.judged += 1
        await self._ack(rnd)
        log.info("round_judged", room=room, cut=rnd.cut, scores=scores, latency_s=round(latency, 3))

    async def _post(
        self, rnd: Round, text: str, *, meta: dict[str, Any], kind: EntryKind, fence: Fence | None
    ) -> PostResult | None:
        """Store the round's verdict or note; None when this judge is not the active one."""
        entry = NewEntry(
            msg_id=server_msg_id("verdict", rnd.cut),
            kind=kind,
            author="judge",
            text=text,
            meta=meta,
        )
        try:
            if fence is None:
                raise FencedError("not the active judge")
            posted = await self.router.post(rnd.room, entry, fence)
        except FencedError:
            log.warning("verdict_fenced", room=rnd.room, cut=rnd.cut)
            return None
        return posted

    async def _ack(self, rnd: Round) -> None:
        await self.redis.xack(keys.rounds(rnd.room), GROUP, rnd.job_id)


def _stored_scores(verdict: Entry) -> dict[str, float]:
    """The scores a stored verdict records (none unless the judge wrote a scored verdict)."""
    scores = verdict.meta.get("scores") if verdict.kind == EntryKind.JUDGE else None
    if verdict.author != "judge" or not isinstance(scores, dict):
        return {}
    return {str(m): float(v) for m, v in scores.items() if isinstance(v, int | float)}


def newest_first(entries: list[Entry]) -> list[Entry]:
    return sorted(entries, key=lambda e: parse_stream_id(e.id), reverse=True)
