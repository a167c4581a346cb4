"""The judge service: active/standby on a lease; scores each round once; updates ratings.

Rounds come from each room's ``rounds`` stream (``judge.rounds``). Only the lease holder reads
them; a standby that takes the lease over claims every round the old holder left pending, and
the verdict is written with the judge lease as a fence, so a deposed judge cannot publish one.

Judge-model calls are capped per room (``judge_calls_per_minute``, a token bucket in Redis
shared by the replicas). A round over the limit is deferred, not dropped (``judge.deferral``);
only a round deferred longer than ``judge_defer_max_s`` is skipped, with a system note in the
room. What the verdict says is built by ``judge.verdicts``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aioredis

from judge import metrics
from judge.deferral import DeferredRounds
from judge.methods import METHODS, JudgeFailedError, Judgement
from judge.rounds import GROUP, RoundQueue, wait_for_answers
from judge.rubric import Candidate
from judge.scorers import Scorer, ScorerError
from judge.settings import JudgeSettings
from judge.verdicts import (
    CONTEXT_ENTRIES,
    render_context,
    score_round,
    stored_scores,
    verdict_meta,
    verdict_text,
)
from llmchat.ids import server_msg_id
from llmchat.leadership import Leadership
from llmchat.lease import LeaseRecord, lease_key
from llmchat.lease_select import make_lease
from llmchat.logs import get_logger
from llmchat.models import Entry, EntryKind, NewEntry
from llmchat.ratelimit import Limit, RateLimitedError, RateLimiter
from llmchat.ratings import RatingStore
from llmchat.redact import redact_url
from llmchat.redis_conn import UNAVAILABLE_ERRORS
from llmchat.router import Fence, FencedError, PostResult, Router
from llmchat.tasks import stop_task
from llmchat.timeline import Timeline
from llmchat.wire import Round

__all__ = ["GROUP", "JudgeService", "render_context", "score_round"]

log = get_logger(__name__)
#: Rate-limit scope of judge-model calls (one bucket per room).
LIMIT_SCOPE = "judge"


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
        self.queue = RoundQueue(redis, settings.rooms, settings.consumer)
        self.limiter = RateLimiter(redis)
        self.limit = Limit(settings.judge_calls_per_minute, settings.judge_calls_burst)
        self.waiting = DeferredRounds(self.limit.describe())
        #: per room, the rounds waiting for the judge-call limit, oldest first
        self.deferred = self.waiting.rooms

    @property
    def term(self) -> int | None:
        return self.leadership.term

    @property
    def active(self) -> bool:
        return self.leadership.leading

    async def run(self, stop: asyncio.Event) -> None:
        await self.queue.ensure_groups()
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
                    self.waiting.forget()  # still pending in Redis: the new holder claims them
                    await asyncio.sleep(self.settings.lease_retry_s)
                    continue
                try:
                    await self._expire_deferred()
                    rounds = self.waiting.due() + await self._next_rounds()
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
        if self._claim_all:  # take over what a previous judge left pending
            self._claim_all = False
            taken = await self.queue.take_over()
            if taken:
                log.info("judge_took_over_rounds", count=len(taken))
                return taken
        return await self.queue.read()

    async def handle(self, rnd: Round) -> None:
        """Judge ``rnd``, unless older rounds of its room wait for the limit: then it queues."""
        if not self.waiting.behind(rnd):
            await self.judge(rnd)

    async def _expire_deferred(self) -> None:
        """Skip, visibly, the rounds that waited for the limit longer than allowed."""
        now = time.monotonic()
        for d in self.waiting.expired(self.settings.judge_defer_max_s):
            rnd = d.rnd
            self.waiting.done(rnd)
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
                await self.queue.ack(rnd)

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
            self.waiting.defer(rnd, exc.retry_after)
            return
        self.waiting.done(rnd)

    async def _judge(self, rnd: Round) -> None:
        answers = await wait_for_answers(self.timeline, rnd, self.settings.round_deadline_s)
        started = time.monotonic()
        fence = self._fence()
        if len(answers) < 2:
            await self._note(
                rnd,
                f"The judge skipped this round: {len(answers)} answer(s), nothing to compare.",
                {"round": rnd.cut, "outcome": "skipped"},
                fence,
            )
            return
        try:
            judgement = await self._score(rnd, answers)
        except (JudgeFailedError, ScorerError) as exc:
            fails = exc.parse_failures if isinstance(exc, JudgeFailedError) else 0
            await self._note(
                rnd,
                f"The judge could not score this round: {exc}. No scores were recorded.",
                {"round": rnd.cut, "outcome": "failed", "parse_failures": fails},
                fence,
            )
            return
        await self._publish(rnd, judgement, time.monotonic() - started, fence)

    async def _score(self, rnd: Round, answers: dict[str, Entry]) -> Judgement:
        """Score the round's answers (its calls taken up front, or RateLimitedError: defer)."""
        room = rnd.room
        context_entries = await self.timeline.read_until(room, rnd.cut, CONTEXT_ENTRIES)
        candidates = [Candidate(m, answers[m].text) for m in rnd.models if m in answers]
        method = self.settings.method
        await self._take_calls(
            room, METHODS[method].calls(len(candidates), self.settings.judge_passes)
        )
        return await score_round(
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

    async def _note(self, rnd: Round, text: str, meta: dict[str, Any], fence: Fence | None) -> None:
        """A round not scored (``meta["outcome"]``): the note in the room, then the ack."""
        await self._post(rnd, text, meta=meta, kind=EntryKind.SYSTEM, fence=fence)
        metrics.VERDICTS.labels(rnd.room, str(meta["outcome"])).inc()
        await self.queue.ack(rnd)

    async def _publish(
        self, rnd: Round, judgement: Judgement, latency: float, fence: Fence | None
    ) -> None:
        """Store the verdict (fenced), then move the ratings once, then acknowledge the round."""
        room = rnd.room
        meta = verdict_meta(
            judgement,
            cut=rnd.cut,
            judge=self.scorer.name,
            method=self.settings.method,
            latency_s=latency,
        )
        scores: dict[str, float] = meta["scores"]
        posted = await self._post(
            rnd, verdict_text(judgement), meta=meta, kind=EntryKind.JUDGE, fence=fence
        )
        if posted is None:
            return
        stored = posted.append.entry
        if posted.append.duplicate:
            # this round's verdict was stored before (this judge retried a round it had
            # scored, or another judge did): the ratings follow the stored verdict, once
            log.warning("verdict_duplicate", room=room, cut=rnd.cut, stored=stored.id)
            scores = stored_scores(stored)
        new, applied = await self.ratings.apply(room, scores, round_id=rnd.cut)
        if not applied:
            await self.queue.ack(rnd)
            return
        for s in judgement.scored:
            metrics.SCORES.labels(room, s.model).observe(s.score)
            if len(s.passes) > 1:
                metrics.POSITION_SHIFT.labels(room).observe(max(s.passes) - min(s.passes))
        for model, rating in new.items():
            metrics.RATING.labels(room, model).set(rating.rating)
            metrics.RATING_BOUND.labels(room, model).set((rating.high - rating.low) / 2)
        metrics.JUDGE_LATENCY.labels(room).observe(latency)
        metrics.VERDICTS.labels(room, "scored").inc()
        self.judged += 1
        await self.queue.ack(rnd)
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
