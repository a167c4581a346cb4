"""Fan-out: each replica follows the timelines of the rooms its clients are in.

One ``RoomFeed`` per room per replica reads the room's stream (XREAD BLOCK on its own
connection) and hands every new entry to the room's local subscribers; one pub/sub connection
carries the rooms' ephemeral events. A subscriber registers *before* it reads its backlog, and
the feed's start ID is fixed before registration, so between backlog and live feed nothing is
missed; the subscriber drops what it has already sent by comparing stream IDs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any, Literal, cast

import redis.asyncio as aioredis

from chat_service import metrics
from llmchat import keys
from llmchat.logs import get_logger
from llmchat.models import Entry
from llmchat.redis_conn import UNAVAILABLE_ERRORS, create_redis
from llmchat.timeline import Rows, Timeline, decode_entry

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class WireEntry:
    """A live timeline entry, its ``entry`` frame serialised once per replica (not per client)."""

    id: str
    ts: float
    text: str


def wire_json(value: Any) -> str:
    """JSON as the WebSocket layer sends it (compact, UTF-8)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


Item = (
    tuple[Literal["entry"], Entry]
    | tuple[Literal["wire"], WireEntry]
    | tuple[Literal["live"], str]
    | tuple[Literal["frame"], dict[str, Any]]
)


class Subscriber:
    """One client's inbox. Overflow marks the client slow: it is disconnected and resumes."""

    def __init__(self, room: str, limit: int) -> None:
        self.room = room
        self.limit = limit
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.overflowed = asyncio.Event()

    def push(self, item: Item) -> None:
        if self.overflowed.is_set():
            return
        if item[0] != "frame" and self.queue.qsize() >= self.limit:
            self.overflowed.set()
            metrics.SLOW_CLIENTS.inc()
            return
        self.queue.put_nowait(item)


class RoomFeed:
    def __init__(self, room: str, start_id: str, redis: aioredis.Redis) -> None:
        self.room = room
        self.last_id = start_id
        self.subscribers: set[Subscriber] = set()
        self._redis = redis
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"feed:{self.room}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()

    async def _run(self) -> None:
        stream = keys.timeline(self.room)
        backoff = 0.05
        while True:
            try:
                resp = await self._redis.xread({stream: self.last_id}, count=500, block=5000)
                backoff = 0.05
            except UNAVAILABLE_ERRORS as exc:
                metrics.FEED_ERRORS.inc()
                log.warning("feed_redis_error", room=self.room, error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            for _stream, rows in cast(list[tuple[str, Rows]], resp or []):
                for sid, fields in rows:
                    self.last_id = sid
                    try:
                        entry = decode_entry(self.room, sid, fields)
                    except (ValueError, KeyError) as exc:  # a foreign or corrupt entry
                        log.error("feed_bad_entry", room=self.room, id=sid, error=str(exc))
                        continue
                    if not self.subscribers:
                        continue
                    frame = {"type": "entry", "entry": entry.model_dump(mode="json")}
                    item: Item = ("wire", WireEntry(entry.id, entry.ts, wire_json(frame)))
                    for sub in tuple(self.subscribers):
                        sub.push(item)


class Hub:
    """All room feeds of this replica, plus the pub/sub reader for ephemeral events."""

    def __init__(self, redis_url: str, timeline: Timeline, queue_limit: int) -> None:
        self._redis_url = redis_url
        self._timeline = timeline
        self._queue_limit = queue_limit
        self._feeds: dict[str, RoomFeed] = {}
        self._lock = asyncio.Lock()
        self._pubsub_redis = create_redis(redis_url, socket_timeout=None)
        self._pubsub = self._pubsub_redis.pubsub(ignore_subscribe_messages=True)
        self._pubsub_task: asyncio.Task[None] | None = None
        self._channels: dict[str, str] = {}  # channel -> room

    @property
    def rooms(self) -> list[str]:
        return list(self._feeds)

    async def subscribe(self, room: str) -> Subscriber:
        """Register a subscriber; entries appended after this returns reach it through its queue."""
        async with self._lock:
            feed = self._feeds.get(room)
            if feed is None:
                start = await self._timeline.last_id(room)
                feed = RoomFeed(room, start, create_redis(self._redis_url, socket_timeout=None))
                self._feeds[room] = feed
                feed.start()
                await self._subscribe_live(room)
            sub = Subscriber(room, self._queue_limit)
            feed.subscribers.add(sub)
            return sub

    async def unsubscribe(self, sub: Subscriber) -> None:
        async with self._lock:
            feed = self._feeds.get(sub.room)
            if feed is None:
                return
            feed.subscribers.discard(sub)
            if not feed.subscribers:
                del self._feeds[sub.room]
                await feed.stop()
                await self._unsubscribe_live(sub.room)

    async def _subscribe_live(self, room: str) -> None:
        channel = keys.live_channel(room)
        self._channels[channel] = room
        try:
            await self._pubsub.subscribe(channel)
        except UNAVAILABLE_ERRORS as exc:  # re-subscribed by the reader when Redis returns
            log.warning("live_subscribe_failed", room=room, error=str(exc))
        if self._pubsub_task is None:
            self._pubsub_task = asyncio.create_task(self._read_live(), name="live-reader")

    async def _unsubscribe_live(self, room: str) -> None:
        channel = keys.live_channel(room)
        self._channels.pop(channel, None)
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            await self._pubsub.unsubscribe(channel)

    async def _read_live(self) -> None:
        backoff = 0.05
        while True:
            try:
                if not self._pubsub.subscribed:
                    if self._channels:
                        await self._pubsub.subscribe(*self._channels)
                    else:
                        await asyncio.sleep(0.2)
                        continue
                msg = await self._pubsub.get_message(timeout=1.0)
                backoff = 0.05
            except UNAVAILABLE_ERRORS as exc:
                log.warning("live_reader_error", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            if msg is None or msg.get("type") != "message":
                continue
            self._dispatch_live(str(msg["channel"]), str(msg["data"]))

    def _dispatch_live(self, channel: str, data: str) -> None:
        room = self._channels.get(channel)
        feed = self._feeds.get(room) if room else None
        if feed is None:
            return
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            log.error("live_bad_event", room=room)
            return
        if not isinstance(event, dict):
            return
        item: Item = ("live", '{"type":"live","event":' + wire_json(event) + "}")
        for sub in tuple(feed.subscribers):
            sub.push(item)

    async def close(self) -> None:
        async with self._lock:
            feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            await feed.stop()
        if self._pubsub_task is not None:
            self._pubsub_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pubsub_task
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self._pubsub_redis.aclose()

    def stats(self) -> dict[str, int]:
        return {
            "rooms": len(self._feeds),
            "subscribers": sum(len(f.subscribers) for f in self._feeds.values()),
        }
