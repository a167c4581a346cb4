"""A model's job queue in a room: a Redis stream with one consumer group per model.

Replicas of a model are consumers of the same group, so they share the work. A job stays
pending until it is acknowledged; the replica working on it renews its claim (XCLAIM to itself)
while it generates, and a job whose claim has gone stale (its replica crashed) is taken over by
another replica with XAUTOCLAIM.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from llmchat import keys
from llmchat.ids import parse_stream_id

GROUP = "workers"

# KEYS: answered hash. ARGV: model, cut. Sets the watermark only forward.
_ADVANCE_LUA = """
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local a_ms, a_seq = string.match(cur, '(%d+)-(%d+)')
  local b_ms, b_seq = string.match(ARGV[2], '(%d+)-(%d+)')
  if tonumber(a_ms) > tonumber(b_ms) or (a_ms == b_ms and tonumber(a_seq) >= tonumber(b_seq)) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Job:
    room: str
    queue: str  # the model's name, or the leader queue
    job_id: str
    cut: str
    msg: str
    reason: str
    enqueued_at: float

    picked_at: float = 0.0

    @property
    def queue_time(self) -> float:
        """Queued to picked up (or to now, while not picked up yet)."""
        end = self.picked_at or time.time()
        return max(0.0, end - self.enqueued_at)


def parse_job(room: str, queue: str, job_id: str, fields: dict[str, str]) -> Job:
    cut = fields.get("cut", "")
    parse_stream_id(cut)
    return Job(
        picked_at=time.time(),
        room=room,
        queue=queue,
        job_id=job_id,
        cut=cut,
        msg=fields.get("msg", ""),
        reason=fields.get("reason", ""),
        enqueued_at=float(fields.get("ts", "0") or 0),
    )


#: (room, queue) pairs: a worker reads its own queue in each room, and the leader queue of
#: the rooms it leads.
Stream = tuple[str, str]


class JobQueue:
    """Job streams read by one consumer (one replica of a model)."""

    def __init__(self, redis: aioredis.Redis, consumer: str) -> None:
        self._redis = redis
        self.consumer = consumer
        self._advance = redis.register_script(_ADVANCE_LUA)

    @staticmethod
    def key(room: str, queue: str) -> str:
        return keys.jobs(room, queue)

    async def ensure_group(self, room: str, queue: str) -> None:
        try:
            await self._redis.xgroup_create(self.key(room, queue), GROUP, id="0", mkstream=True)
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, streams: list[Stream], count: int, block_ms: int | None) -> list[Job]:
        """New jobs for this consumer (blocking up to ``block_ms``; None: do not block)."""
        by_key = {self.key(r, q): (r, q) for r, q in streams}
        wanted: dict[Any, Any] = dict.fromkeys(by_key, ">")
        resp = await self._redis.xreadgroup(
            GROUP, self.consumer, wanted, count=count, block=block_ms
        )
        jobs: list[Job] = []
        for stream, rows in cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], resp or []):
            if str(stream) in by_key:
                room, queue = by_key[str(stream)]
                jobs.extend(parse_job(room, queue, jid, fields) for jid, fields in rows)
        return jobs

    async def reclaim(self, streams: list[Stream], min_idle_ms: int, count: int = 100) -> list[Job]:
        """Jobs whose holder stopped renewing its claim for ``min_idle_ms`` (crashed replica)."""
        jobs: list[Job] = []
        for room, queue in streams:
            resp = await self._redis.xautoclaim(
                self.key(room, queue), GROUP, self.consumer, min_idle_ms, "0-0", count=count
            )
            rows = cast(list[tuple[str, dict[str, str] | None]], resp[1])
            jobs.extend(parse_job(room, queue, jid, f) for jid, f in rows if f)
        return jobs

    def _by_stream(self, jobs: list[Job]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for job in jobs:
            out.setdefault(self.key(job.room, job.queue), []).append(job.job_id)
        return out

    async def renew(self, jobs: list[Job]) -> None:
        """Reset the idle time of jobs we are working on, so nobody reclaims them."""
        for key, ids in self._by_stream(jobs).items():
            await self._redis.xclaim(key, GROUP, self.consumer, 0, list[Any](ids), justid=True)

    async def ack(self, jobs: list[Job]) -> None:
        for key, ids in self._by_stream(jobs).items():
            pipe = self._redis.pipeline(transaction=True)
            pipe.xack(key, GROUP, *ids)
            pipe.xdel(key, *ids)
            await pipe.execute()

    async def answered_cut(self, room: str, queue: str) -> str | None:
        raw = await self._redis.hget(keys.answered(room), queue)
        return str(raw) if raw else None

    async def mark_answered(self, room: str, queue: str, cut: str) -> None:
        await self._advance(keys=[keys.answered(room)], args=[queue, cut])

    async def depth(self, streams: list[Stream]) -> int:
        total = 0
        for room, queue in streams:
            total += int(await self._redis.xlen(self.key(room, queue)))
        return total
