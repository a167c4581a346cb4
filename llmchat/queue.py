"""A work queue on Redis streams with a consumer group: the model workers' jobs and the judge's
rounds (``llmchat.wire`` owns what the entries hold).

The replicas of a service are consumers of one group, so they share the work. An entry stays
pending until it is acknowledged; its consumer may renew its claim while it works (XCLAIM to
itself), and an entry whose claim has gone stale (its consumer crashed, or lost the lease it
worked under) is taken over with XAUTOCLAIM. An entry that does not parse is logged and
acknowledged, never a crash; it stays in the stream for inspection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, cast

import redis.asyncio as aioredis

from llmchat.logs import get_logger
from llmchat.wire import WireFormatError

log = get_logger(__name__)

T = TypeVar("T")
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
        wanted: dict[Any, Any] = dict.fromkeys(streams, ">")
        resp = await self._redis.xreadgroup(
            self.group, self.consumer, wanted, count=count, block=block_ms
        )
        items: list[T] = []
        for stream, rows in cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], resp or []):
            key = str(stream)
            if key in streams:
                items.extend(await self._parse(key, streams[key], rows))
        return items

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
