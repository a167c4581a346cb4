"""Room affinity with bounded load: a room's turns go preferably to the replica that served it
last, whose KV cache still holds the room's prompt prefix.

Replicas of a model share a room's job queue (a stream with one consumer group), and Redis hands
a job to whichever replica reads first. Affinity is layered on top without changing that:

* the replica that answers a turn records itself as the room's owner for that queue
  (``HSET llmchat:room:{room}:affinity <queue> <consumer>``);
* every replica publishes its load (turns in progress: 0 or 1, as a llama.cpp model runs one
  generation at a time) in an expiring key, refreshed by its heartbeat and at each turn;
* a replica that is not the owner leaves the room's queue out of its reads while the owner is
  alive and below the load bound, and the queue's oldest undelivered job has waited less than
  ``wait_ms``. When the owner is busy, crashed (its load key expired) or slow to take the job,
  the others read the queue again at their next poll (at most ``block_ms`` later).

This is the bounded-load part of consistent hashing with bounded loads (as KubeAI routes by
prefix), reduced to what a handful of replicas needs: the "hash" is the last owner (the replica
whose cache is warm), and the bound is "not busy" (waiting behind another whole generation costs
more than evaluating the prompt afresh). A job is held back from the other replicas for at most
``wait_ms`` (plus one poll), so affinity can delay a turn only by that much.
"""

from __future__ import annotations

import time
from typing import Any, cast

import redis.asyncio as aioredis

from llmchat.keys import PREFIX
from model_worker.jobs import GROUP, JobQueue, Stream

#: A replica's load key lives this long without a refresh (its heartbeat runs every second).
LOAD_TTL_MS = 3000


def affinity_key(room: str) -> str:
    """Hash of queue -> the consumer that answered the room's last turn from that queue."""
    return f"{PREFIX}:room:{{{room}}}:affinity"


def load_key(model: str, consumer: str) -> str:
    """A replica's turns in progress (expiring: a crashed replica's key lapses)."""
    return f"{PREFIX}:worker:{model}:{consumer}:load"


class Affinity:
    def __init__(
        self,
        redis: aioredis.Redis,
        model: str,
        consumer: str,
        max_load: int = 1,
        wait_ms: int = 300,
    ) -> None:
        self._redis = redis
        self.model = model
        self.consumer = consumer
        self.max_load = max_load
        self.wait_ms = wait_ms

    async def set_load(self, load: int) -> None:
        await self._redis.set(load_key(self.model, self.consumer), load, px=LOAD_TTL_MS)

    async def claim(self, room: str, queue: str, load: int) -> None:
        """We are answering a turn of ``room``: own it and publish our load, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(affinity_key(room), queue, self.consumer)
        pipe.set(load_key(self.model, self.consumer), load, px=LOAD_TTL_MS)
        await pipe.execute()

    async def owners(self, streams: list[Stream]) -> dict[Stream, str]:
        """The recorded owner of each stream (absent: none recorded)."""
        if not streams:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for room, queue in streams:
            pipe.hget(affinity_key(room), queue)
        found = cast(list[str | None], await pipe.execute())
        return {s: o for s, o in zip(streams, found, strict=True) if o}

    async def readable(self, streams: list[Stream]) -> tuple[list[Stream], bool]:
        """The streams to read now: all but those an idle owner will take; and whether any of
        them is read only because its owner is busy (then read without blocking: a blocking
        read would still be waiting when the owner turns idle, and take the room's next job
        from it)."""
        owners = await self.owners(streams)
        others = sorted({o for o in owners.values() if o != self.consumer})
        if not others:
            return streams, False
        pipe = self._redis.pipeline(transaction=False)
        for other in others:
            pipe.get(load_key(self.model, other))
        loads_raw = cast(list[str | None], await pipe.execute())
        loads = {o: int(raw) for o, raw in zip(others, loads_raw, strict=True) if raw is not None}
        available = {o for o, load in loads.items() if load < self.max_load}
        spill = any(owners.get(s) in loads and owners.get(s) not in available for s in streams)
        held = [s for s in streams if owners.get(s, self.consumer) in available]
        if not held:
            return streams, spill
        waited = await self._oldest_wait_ms(held)
        late = {s for s, ms in zip(held, waited, strict=True) if ms >= self.wait_ms}
        return [s for s in streams if s not in held or s in late], spill

    async def _oldest_wait_ms(self, streams: list[Stream]) -> list[float]:
        """How long the oldest job not yet handed to any replica has waited, per stream."""
        keys = [JobQueue.key(room, queue) for room, queue in streams]
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.xinfo_groups(key)
        infos = await pipe.execute(raise_on_error=False)
        pipe = self._redis.pipeline(transaction=False)
        for key, info in zip(keys, infos, strict=True):
            last = "0-0"
            if isinstance(info, list):
                for group in info:
                    if group.get("name") == GROUP:
                        last = str(group.get("last-delivered-id") or "0-0")
            pipe.xrange(key, min=f"({last}", count=1)
        rows = cast(list[list[tuple[str, Any]]], await pipe.execute())
        now_ms = time.time() * 1000
        return [max(0.0, now_ms - int(r[0][0].split("-", 1)[0])) if r else 0.0 for r in rows]
