"""A model's job queue in a room: a Redis stream with one consumer group per model.

Replicas of a model are consumers of the same group (``llmchat.queue``), so they share the
work; the replica working on a job renews its claim while it generates, and a job whose claim
has gone stale (its replica crashed) is taken over by another replica. What a job holds is
``llmchat.wire``'s; what is this model's own is the watermark of the newest answered cut.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from llmchat import keys
from llmchat.queue import ConsumerGroup, Parser
from llmchat.wire import Job, parse_job

__all__ = ["GROUP", "Job", "JobQueue", "Stream"]

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


#: (room, queue) pairs: a worker reads its own queue in each room, and the leader queue of
#: the rooms it leads.
Stream = tuple[str, str]


class JobQueue:
    """Job streams read by one consumer (one replica of a model)."""

    def __init__(self, redis: aioredis.Redis, consumer: str) -> None:
        self._redis = redis
        self.consumer = consumer
        self._group: ConsumerGroup[Job] = ConsumerGroup(redis, GROUP, consumer)
        self._advance = redis.register_script(_ADVANCE_LUA)

    @staticmethod
    def key(room: str, queue: str) -> str:
        return keys.jobs(room, queue)

    @staticmethod
    def _parser(room: str, queue: str) -> Parser[Job]:
        return lambda job_id, fields: parse_job(room, queue, job_id, fields)

    async def ensure_group(self, room: str, queue: str) -> None:
        await self._group.ensure_group(self.key(room, queue))

    async def read(self, streams: list[Stream], count: int, block_ms: int | None) -> list[Job]:
        """New jobs for this consumer (blocking up to ``block_ms``; None: do not block)."""
        parsers = {self.key(r, q): self._parser(r, q) for r, q in streams}
        return await self._group.read(parsers, count, block_ms)

    async def reclaim(self, streams: list[Stream], min_idle_ms: int, count: int = 100) -> list[Job]:
        """Jobs whose holder stopped renewing its claim for ``min_idle_ms`` (crashed replica)."""
        jobs: list[Job] = []
        for room, queue in streams:
            jobs.extend(
                await self._group.claim_stale(
                    self.key(room, queue), self._parser(room, queue), min_idle_ms, count
                )
            )
        return jobs

    def _by_stream(self, jobs: list[Job]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for job in jobs:
            out.setdefault(self.key(job.room, job.queue), []).append(job.job_id)
        return out

    async def renew(self, jobs: list[Job]) -> None:
        """Reset the idle time of jobs we are working on, so nobody reclaims them."""
        for key, ids in self._by_stream(jobs).items():
            await self._group.renew(key, ids)

    async def ack(self, jobs: list[Job]) -> None:
        for key, ids in self._by_stream(jobs).items():
            await self._group.ack(key, ids, delete=True)

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
