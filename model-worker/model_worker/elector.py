"""A model's side of a room's election: campaign for the lease when nominated, hold it while
healthy, hand it over when a model rated better with confidence is healthy, lose it when paused.

The lease says who leads; the ratings say who should. Every replica of every model in a room
runs one elector per room; the lease makes sure only one of them leads at a time, and its term
fences the leader's answers.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from llmchat import keys
from llmchat.election import ElectionPolicy, may_acquire, should_hand_over
from llmchat.health import healthy_models
from llmchat.leadership import Leadership
from llmchat.lease import Lease, LeaseRecord, LeaseTimings
from llmchat.lease_select import make_lease
from llmchat.logs import get_logger
from llmchat.ratings import Rating, RatingStore
from llmchat.redis_conn import UNAVAILABLE_ERRORS
from llmchat.rooms import RoomStore
from llmchat.router import Fence
from model_worker import metrics
from model_worker.settings import WorkerSettings

log = get_logger(__name__)


class Elector:
    """A model's campaign in one room: the election policy over one ``Leadership``."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        room: str,
        model: str,
        holder: str,
        lease: Lease,
        fence_key: str,
        timings: LeaseTimings,
        policy: ElectionPolicy,
        is_healthy: Callable[[], bool],
    ) -> None:
        self.redis = redis
        self.room = room
        self.model = model
        self.holder = holder  # model name: the lease names the model, not the replica
        self.lease = lease
        self.fence_key = fence_key
        self.timings = timings
        self.policy = policy
        self.is_healthy = is_healthy
        self.ratings = RatingStore(redis)
        self.rooms = RoomStore(redis)
        self.leadership = Leadership(
            lease,
            holder,
            timings,
            on_started=self._started,
            on_stopped=self._lost,
            on_error=self._error,
            errors=UNAVAILABLE_ERRORS,
            error_reason="redis-unreachable",
            fit=is_healthy,
            read_first=True,
            may_acquire=self._may_acquire,
            step_down=self._successor,
        )
        # tasks started and not awaited (the leader announcement): held here until done, as
        # asyncio keeps only a weak reference to a running task
        self._background: set[asyncio.Task[None]] = set()
        self.on_elected: Callable[[], None] | None = None

    @property
    def term(self) -> int | None:
        return self.leadership.term

    @property
    def leading(self) -> bool:
        return self.leadership.leading

    def fence(self) -> Fence | None:
        return Fence(self.fence_key, self.holder, self.term) if self.term is not None else None

    async def run(self) -> None:
        await self.leadership.run()

    def _error(self, exc: Exception) -> None:
        log.warning("elector_redis_error", room=self.room, error=str(exc))

    async def _candidates(self) -> tuple[list[str], dict[str, Rating], set[str]]:
        room = await self.rooms.get(self.room)
        models = room.model_names() if room else [self.model]
        ratings = await self.ratings.all(self.room)
        healthy = await healthy_models(self.redis, self.room)
        if self.is_healthy():
            healthy.add(self.model)
        else:
            healthy.discard(self.model)
        return models, ratings, healthy

    async def _may_acquire(self, record: LeaseRecord | None) -> bool:
        assert record is not None  # read_first
        if record.held():  # only another replica of this model may join it (same term)
            return record.holder == self.holder
        models, ratings, healthy = await self._candidates()
        lapsed = record.holder is not None and not record.held()
        excluded = {record.holder} if lapsed and record.holder else set()
        if may_acquire(
            me=self.model, models=models, ratings=ratings, healthy=healthy, excluded=excluded
        ):
            return True
        # nobody else can lead: even a lapsed holder may take it back
        return not (healthy - excluded) and may_acquire(
            me=self.model, models=models, ratings=ratings, healthy=healthy, excluded=set()
        )

    def _started(self, got: LeaseRecord, previous: LeaseRecord | None) -> None:
        assert previous is not None  # read_first
        if previous.held():  # joined another replica of this model: not a new election
            if self.on_elected:
                self.on_elected()
            return
        self._elected(previous, got)

    def _elected(self, previous: LeaseRecord, got: LeaseRecord) -> None:
        if previous.holder is None and previous.term == 0:
            reason, waited = "initial", 0.0
        elif previous.holder is None:
            reason = "handover"
            waited = max(0.0, time.time() - (previous.renewed_at or time.time()))
        else:
            reason = "failover"
            waited = max(0.0, time.time() - (previous.expires_at or time.time()))
        metrics.ELECTIONS.labels(self.room, reason).inc()
        metrics.ELECTION_TIME.labels(self.room).observe(waited)
        metrics.LEADER.labels(self.room, self.model).set(1)
        log.info(
            "leader_elected",
            room=self.room,
            model=self.model,
            term=got.term,
            reason=reason,
            previous=previous.holder,
            election_s=round(waited, 3),
        )
        task = asyncio.get_running_loop().create_task(self._publish(reason, previous, waited))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if self.on_elected:
            self.on_elected()

    async def _publish(self, reason: str, previous: LeaseRecord, waited: float) -> None:
        record = {
            "model": self.model,
            "term": self.term,
            "since": time.time(),
            "reason": reason,
            "previous": previous.holder,
            "election_s": round(waited, 4),
        }
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(keys.leader(self.room), json.dumps(record))
        if reason == "failover":
            pipe.set(keys.round_due(self.room), "1")
        await pipe.execute()

    def _lost(self, reason: str) -> None:
        log.warning(
            "leadership_lost", room=self.room, model=self.model, term=self.term, reason=reason
        )
        metrics.LEADER.labels(self.room, self.model).set(0)

    async def _successor(self) -> str | None:
        """``handover`` when a model rated better with confidence is healthy (else None)."""
        models, ratings, healthy = await self._candidates()
        successor = should_hand_over(
            leader=self.model,
            models=models,
            ratings=ratings,
            healthy=healthy,
            tenure_s=time.monotonic() - self.leadership.since,
            policy=self.policy,
        )
        if successor is None:
            return None
        log.info("leadership_handover", room=self.room, model=self.model, to=successor)
        return "handover"

    async def resign(self) -> None:
        """Release the lease on graceful shutdown so a successor need not wait for expiry."""
        await self.leadership.resign("shutdown")


def electors_for(
    settings: WorkerSettings,
    redis: aioredis.Redis,
    is_healthy: Callable[[], bool],
    on_elected: Callable[[str], None],
) -> dict[str, Elector]:
    """One elector per room the worker serves, each on the room's lease (``on_elected(room)``
    when it wins one)."""
    electors: dict[str, Elector] = {}
    for room in settings.rooms:
        lease = make_lease(
            redis,
            name=settings.lease_name or keys.leader_lease_name(room),
            redis_key=keys.room_lease(room),
            duration_s=settings.lease_duration_s,
            namespace=settings.lease_namespace,
        )
        elector = Elector(
            redis=redis,
            room=room,
            model=settings.model_name,
            holder=settings.model_name,
            lease=lease,
            fence_key=keys.room_lease(room),
            timings=settings.lease_timings,
            policy=ElectionPolicy(settings.hysteresis, settings.min_tenure_s),
            is_healthy=is_healthy,
        )
        elector.on_elected = functools.partial(on_elected, room)
        electors[room] = elector
    return electors
