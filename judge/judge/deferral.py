"""Rounds waiting for their room's judge-call limit, in order, per room.

A round over the limit is deferred, not dropped: it stays pending in the stream (a judge that
takes over claims it) and waits here until the bucket has refilled; the service skips, with a
system note, a round deferred longer than ``judge_defer_max_s``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from judge import metrics
from llmchat.logs import get_logger
from llmchat.wire import Round

log = get_logger(__name__)


@dataclass
class Deferred:
    """A round waiting for its room's judge-call bucket."""

    rnd: Round
    due: float  # time.monotonic() when to try again
    since: float  # time.monotonic() when first deferred


class DeferredRounds:
    """Per room, the rounds waiting for the judge-call limit, oldest first."""

    def __init__(self, limit: str) -> None:
        self.limit = limit  # the limit, as the logs describe it
        self.rooms: dict[str, list[Deferred]] = {}

    def behind(self, rnd: Round) -> bool:
        """Whether older rounds of ``rnd``'s room wait: then it queues behind them."""
        queue = self.rooms.setdefault(rnd.room, [])
        if queue and queue[0].rnd.job_id != rnd.job_id:
            if all(d.rnd.job_id != rnd.job_id for d in queue):
                self.defer(rnd, queue[0].due - time.monotonic())
            return True
        return False

    def defer(self, rnd: Round, retry_after: float) -> None:
        queue = self.rooms.setdefault(rnd.room, [])
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
            limit=self.limit,
        )

    def done(self, rnd: Round) -> None:
        queue = self.rooms.get(rnd.room)
        if queue:
            queue[:] = [d for d in queue if d.rnd.job_id != rnd.job_id]
            metrics.DEFERRED.labels(rnd.room).set(len(queue))

    def due(self) -> list[Round]:
        """The oldest deferred round of each room, once its wait is over."""
        now = time.monotonic()
        return [q[0].rnd for q in self.rooms.values() if q and q[0].due <= now]

    def expired(self, max_s: float) -> list[Deferred]:
        """The rounds that have waited ``max_s`` or longer."""
        now = time.monotonic()
        return [d for q in self.rooms.values() for d in q if now - d.since >= max_s]

    def forget(self) -> None:
        for room, queue in self.rooms.items():
            queue.clear()
            metrics.DEFERRED.labels(room).set(0)
