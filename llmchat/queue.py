"""A work queue on Redis streams with a consumer group: the model workers' jobs and the judge's
rounds (``llmchat.wire`` owns what the entries hold).

The replicas of a service are consumers of one group, so they share the work. An entry stays
pending until it is acknowledged; its consumer may renew its claim while it works (XCLAIM to
itself), and an entry whose claim has gone stale (its consumer crashed, or lost the lease it
worked under) is taken over with XAUTOCLAIM. An entry that does not parse is logged and
acknowledged, never a crash; it stays in the stream for inspection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, cast

import redis.asyncio as aioredis

from llmchat.logs import get_logger
from llmchat.redis_conn import slot_groups
from llmchat.wire import WireFormatError

log = get_logger(__name__)

T = TypeVar("T")
#: On a Redis Cluster, how long a consumer whose streams lie on several slots waits between
#: rounds of non-blocking reads that found nothing (it cannot block on them all at once).
CLUSTER_POLL_MS = 50
#: Parses one entry of a stream: (entry id, fields) -> the item (raises WireFormatError).
Parser = Callable[[str, dict[str, str]], T]


class ConsumerGroup(Generic[T]):
    """One consumer of group ``group`` on any number of streams."""

    def __init__(self, redis: aioredis.Redis, group: str, consumer: str) -> None:
        self._redis = redis
        self.group = group
        self.consumer = consumer

    async def ensure_group(self, key: str) -> None:
        """Create the stream's group (and the stream) unless it exists."""
        try:
            await self._redis.xgroup_create(key, self.group, id="0", mkstream=True)
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(
        self, streams: Mapping[str, Parser[T]], count: int, block_ms: int | None
    ) -> list[T]:
        """New entries for this consumer (blocking up to ``block_ms``; None: do not block)."""
        groups = slot_groups(self._redis, list(streams))
        if len(groups) <= 1:
            resp = await self._xreadgroup(list(streams), count, block_ms)
        else:
            # A cluster refuses an XREADGROUP whose streams lie on different slots (several
            # rooms), even on one node: each slot's streams are read without blocking, all at
            # once, and an empty round is followed by a short pause instead of a blocked read.
            replies = await asyncio.gather(*(self._xreadgroup(g, count, None) for g in groups))
            resp = [row for reply in replies for row in (reply or [])]
            if not resp and block_ms:
                await asyncio.sleep(min(block_ms, CLUSTER_POLL_MS) / 1000)
        items: list[T] = []
        for stream, rows in cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], resp or []):
            key = str(stream)
            if key in streams:
                items.extend(await self._parse(key, streams[key], rows))
        return items

    async def _xreadgroup(self, keys: list[str], count: int, block_ms: int | None) -> Any:
        wanted: dict[Any, Any] = dict.fromkeys(keys, ">")
        return await self._redis.xreadgroup(
            self.group, self.consumer, wanted, count=count, block=block_ms
        )

    async def claim_stale(
        self, key: str, parse: Parser[T], min_idle_ms: int, count: int = 100
    ) -> list[T]:
        """Entries of ``key`` whose consumer stopped renewing its claim for ``min_idle_ms``."""
        resp = await self._redis.xautoclaim(
            key, self.group, self.consumer, min_idle_ms, "0-0", count=count
        )
        rows = cast(list[tuple[str, dict[str, str] | None]], resp[1])
        return await self._parse(key, parse, [(i, f) for i, f in rows if f])

    async def renew(self, key: str, ids: list[str]) -> None:
        """Reset the idle time of entries we are working on, so nobody claims them."""
        await self._redis.xclaim(key, self.group, self.consumer, 0, list[Any](ids), justid=True)

    async def ack(self, key: str, ids: list[str], *, delete: bool = False) -> None:
        """Acknowledge entries (and with ``delete``, remove them from the stream, atomically)."""
        if not delete:
            await self._redis.xack(key, self.group, *ids)
            return
        pipe = self._redis.pipeline(transaction=True)
        pipe.xack(key, self.group, *ids)
        pipe.xdel(key, *ids)
        await pipe.execute()

    async def _parse(
        self, key: str, parse: Parser[T], rows: list[tuple[str, dict[str, str]]]
    ) -> list[T]:
        items: list[T] = []
        bad: list[str] = []
        for entry_id, fields in rows:
            try:
                items.append(parse(entry_id, fields))
            except WireFormatError as exc:
                log.error(
                    "queue_entry_invalid", stream=key, id=entry_id, group=self.group, error=str(exc)
                )
                bad.append(entry_id)
        if bad:
            await self.ack(key, bad)
        return items
