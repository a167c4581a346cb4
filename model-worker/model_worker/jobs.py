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
    job_id: str
    cut: str
    msg: str
    reason: str
    enqueued_at: float

    @property
    def queue_time(self) -> float:
        return max(0.0, time.time() - self.enqueued_at)


def parse_job(room: str, job_id: str, fields: dict[str, str]) -> Job:
    cut = fields.get("cut", "")
    parse_stream_id(cut)
    return Job(
        room=room,
        job_id=job_id,
        cut=cut,
        msg=fields.get("msg", ""),
        reason=fields.get("reason", ""),
        enqueued_at=float(fields.get("ts", "0") or 0),
    )


class JobQueue:
    """The queues of one model across the rooms it serves."""

    def __init__(self, redis: aioredis.Redis, model: str, consumer: str) -> None:
        self._redis = redis
        self.model = model
        self.consumer = consumer
        self._advance = redis.register_script(_ADVANCE_LUA)

    def key(self, room: str) -> str:
        return keys.jobs(room, self.model)

    async def ensure_group(self, room: str) -> None:
        try:
            await self._redis.xgroup_create(self.key(room), GROUP, id="0", mkstream=True)
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, rooms: list[str], count: int, block_ms: int) -> list[Job]:
        """New jobs for this consumer (blocking up to ``block_ms``)."""
        streams: dict[Any, Any] = {self.key(r): ">" for r in rooms}
        resp = await self._redis.xreadgroup(
            GROUP, self.consumer, streams, count=count, block=block_ms
        )
        return self._parse({self.key(r): r for r in rooms}, resp)

    async def reclaim(self, rooms: list[str], min_idle_ms: int, count: int = 100) -> list[Job]:
        """Jobs whose holder stopped renewing its claim for ``min_idle_ms`` (crashed replica)."""
        jobs: list[Job] = []
        for room in rooms:
            resp = await self._redis.xautoclaim(
                self.key(room), GROUP, self.consumer, min_idle_ms, "0-0", count=count
            )
            rows = cast(list[tuple[str, dict[str, str] | None]], resp[1])
            jobs.extend(parse_job(room, jid, f) for jid, f in rows if f)
        return jobs

    async def renew(self, jobs: list[Job]) -> None:
        """Reset the idle time of jobs we are working on, so nobody reclaims them."""
        by_room: dict[str, list[str]] = {}
        for job in jobs:
            by_room.setdefault(job.room, []).append(job.job_id)
        for room, ids in by_room.items():
            await self._redis.xclaim(
                self.key(room), GROUP, self.consumer, 0, list[Any](ids), justid=True
            )

    async def ack(self, jobs: list[Job]) -> None:
        by_room: dict[str, list[str]] = {}
        for job in jobs:
            by_room.setdefault(job.room, []).append(job.job_id)
        for room, ids in by_room.items():
            pipe = self._redis.pipeline(transaction=True)
            pipe.xack(self.key(room), GROUP, *ids)
            pipe.xdel(self.key(room), *ids)
            await pipe.execute()

    async def answered_cut(self, room: str) -> str | None:
        raw = await self._redis.hget(keys.answered(room), self.model)
        return str(raw) if raw else None

    async def mark_answered(self, room: str, cut: str) -> None:
        await self._advance(keys=[keys.answered(room)], args=[self.model, cut])

    async def depth(self, rooms: list[str]) -> int:
        total = 0
        for room in rooms:
            total += int(await self._redis.xlen(self.key(room)))
        return total

    @staticmethod
    def _parse(by_key: dict[str, str], resp: Any) -> list[Job]:
        jobs: list[Job] = []
        for stream, rows in cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], resp or []):
            room = by_key.get(str(stream))
            if room is None:
                continue
            jobs.extend(parse_job(room, jid, fields) for jid, fields in rows)
        return jobs
