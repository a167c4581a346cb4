"""Fan-out: each replica follows the timelines of the rooms its clients are in.

One ``RoomFeed`` per room per replica holds the room's local subscribers and the last stream ID
handed to them; one reader task follows every room's stream with a single XREAD BLOCK and hands
each new entry to the room's subscribers; one pub/sub connection carries the rooms' ephemeral
events. A subscriber registers *before* it reads its backlog, and
the feed's start ID is fixed before registration, so between backlog and live feed nothing is
missed; the subscriber drops what it has already sent by comparing stream IDs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal, cast

from chat_service import metrics
from llmchat import keys
from llmchat.ids import parse_stream_id
from llmchat.logs import get_logger
from llmchat.models import Entry
from llmchat.redis_conn import UNAVAILABLE_ERRORS, create_redis
from llmchat.tasks import stop_task
from llmchat.timeline import Rows, Timeline, decode_entry

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class WireEntry:
    """A live timeline entry, its ``entry`` frame serialised once per replica (not per client)."""

    id: str
    key: tuple[int, int]  # the id parsed once, so each client compares tuples, not strings
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
    """One client's outbox: the room's entries and events, and the replies to its own frames.

    Everything counts against ``limit``, replies too: a client that sends frames without reading
    the answers fills its outbox like one that cannot keep up with the room, and either is
    disconnected (it resumes with its cursor). On overflow the outbox is emptied at once, so a
    client that is cut off holds no memory while its socket closes.
    """

    def __init__(self, room: str, limit: int) -> None:
        self.room = room
        self.limit = limit
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.overflowed = asyncio.Event()

    def push(self, item: Item) -> None:
        if self.overflowed.is_set():
            return
        if self.queue.qsize() >= self.limit:
            self.overflowed.set()
            metrics.SLOW_CLIENTS.inc()
            self.queue = asyncio.Queue()  # drop what it will never read
            return
        self.queue.put_nowait(item)


#: Seconds between timeline reads under load, per room followed (see ``Hub._read_feeds``).
READ_PAUSE_PER_ROOM_S = 10e-6


class RoomFeed:
    """The local subscribers of one room and how far this replica has read its timeline."""

    def __init__(self, room: str, start_id: str) -> None:
        self.room = room
        self.stream = keys.timeline(room)
        self.last_id = start_id
        self.subscribers: set[Subscriber] = set()

    def deliver(self, rows: Rows) -> None:
        """Hand the entries after ``last_id`` to every subscriber (each serialised once)."""
        last = parse_stream_id(self.last_id)
        for sid, fields in rows:
            key = parse_stream_id(sid)
            if key <= last:  # read by an XREAD from before a re-subscribe
                continue
            self.last_id, last = sid, key
            try:
                entry = decode_entry(self.room, sid, fields)
            except (ValueError, KeyError) as exc:  # a foreign or corrupt entry
                log.error("feed_bad_entry", room=self.room, id=sid, error=str(exc))
                continue
            if not self.subscribers:
                continue
            frame = {"type": "entry", "entry": entry.model_dump(mode="json")}
            item: Item = ("wire", WireEntry(entry.id, key, entry.ts, wire_json(frame)))
            for sub in tuple(self.subscribers):
                sub.push(item)


class Hub:
    """All room feeds of this replica, plus the pub/sub reader for ephemeral events.

    One task reads the timelines of every room this replica has clients in with a single
    ``XREAD BLOCK`` over all their streams (so a burst of posts across many rooms costs one round
    trip, not one per room, and the replica holds one reading connection, not one per room). A
    room added while that read is blocked wakes it through this replica's own wake stream, which
    the read includes: an XADD there returns the blocked XREAD at once, and a wake sent just
    before the read began is still seen, because the wake stream is read from its last seen ID.
    (A clustered Redis would need one such read per slot; this project runs one Redis.)
    """

    def __init__(self, redis_url: str, timeline: Timeline, queue_limit: int) -> None:
        self._redis_url = redis_url
        self._timeline = timeline
        self._queue_limit = queue_limit
        self._feeds: dict[str, RoomFeed] = {}
        self._streams: dict[str, RoomFeed] = {}  # timeline key -> feed
        self._lock = asyncio.Lock()
        self._pubsub_redis = create_redis(redis_url, socket_timeout=None)
        self._pubsub = self._pubsub_redis.pubsub(ignore_subscribe_messages=True)
        self._pubsub_task: asyncio.Task[None] | None = None
        self._channels: dict[str, str] = {}  # channel -> room
        self._feed_redis = create_redis(redis_url, socket_timeout=None)
        self._feed_task: asyncio.Task[None] | None = None
        self._wake_key = keys.feed_wake(uuid.uuid4().hex)
        self._wake_last = "0-0"
        self._version = 0  # bumped whenever a room is added or removed
        self._reading: int | None = None  # the version of the XREAD in flight
        self._plan: tuple[list[RoomFeed], list[str]] = ([], [])
        self._plan_version = -1
        self._wake_sent = False
        self._has_feeds = asyncio.Event()
        self.reads = 0  # XREAD calls made (for tests)

    @property
    def rooms(self) -> list[str]:
        return list(self._feeds)

    async def subscribe(self, room: str) -> Subscriber:
        """Register a subscriber; entries appended after this returns reach it through its queue."""
        async with self._lock:
            feed = self._feeds.get(room)
            if feed is None:
                start = await self._timeline.last_id(room)
                feed = RoomFeed(room, start)
                self._feeds[room] = feed
                self._streams[feed.stream] = feed
                self._version += 1
                self._has_feeds.set()
                await self._wake_reader(room)
                await self._subscribe_live(room)
            sub = Subscriber(room, self._queue_limit)
            feed.subscribers.add(sub)
            return sub

    async def _wake_reader(self, room: str) -> None:
        if self._feed_task is None:
            self._feed_task = asyncio.create_task(self._read_feeds(), name="feed-reader")
            return
        if self._reading is None or self._reading == self._version or self._wake_sent:
            return  # the next read includes the room, or a wake is already on its way
        self._wake_sent = True
        try:
            pipe = self._feed_redis.pipeline(transaction=False)
            pipe.xadd(self._wake_key, {"room": room}, maxlen=16, approximate=False)
            pipe.expire(self._wake_key, 3600)  # a replica that dies leaves nothing behind
            await pipe.execute()
        except UNAVAILABLE_ERRORS as exc:  # the reader retries and re-reads every room
            self._wake_sent = False
            log.warning("feed_wake_failed", room=room, error=str(exc))

    def _read_plan(self) -> tuple[list[RoomFeed], list[str]]:
        """The feeds to read and their stream keys (rebuilt only when rooms come or go)."""
        if self._plan_version != self._version:
            feeds = list(self._feeds.values())
            self._plan = (feeds, [f.stream for f in feeds] + [self._wake_key])
            self._plan_version = self._version
        return self._plan

    async def _read_feeds(self) -> None:
        backoff = 0.05
        while True:
            if not self._feeds:
                self._has_feeds.clear()
                await self._has_feeds.wait()
                continue
            feeds, stream_keys = self._read_plan()
            ids = [feed.last_id for feed in feeds]
            ids.append(self._wake_last)
            self._reading = self._version
            self._wake_sent = False
            started = time.monotonic()
            try:
                resp = await self._feed_redis.execute_command(  # type: ignore[no-untyped-call]
                    "XREAD", "COUNT", 500, "BLOCK", 5000, "STREAMS", *stream_keys, *ids
                )
                backoff = 0.05
            except UNAVAILABLE_ERRORS as exc:
                metrics.FEED_ERRORS.inc()
                log.warning("feed_redis_error", rooms=len(feeds), error=str(exc),
                            retry_in=backoff)  # fmt: skip
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            finally:
                self._reading = None
            self.reads += 1
            for stream, rows in cast(list[tuple[str, Rows]], resp or []):
                if stream == self._wake_key:
                    if rows:
                        self._wake_last = rows[-1][0]
                    continue
                feed = self._streams.get(stream)
                if feed is not None:
                    feed.deliver(rows)
            if resp:
                # A read costs O(rooms) (client and Redis), whatever it returns: under load,
                # let entries gather for a moment rather than read a few at a time. The pause
                # grows with the rooms followed: 2 ms for 200 rooms or fewer, 50 ms at 5,000.
                pause = min(0.05, max(0.002, len(feeds) * READ_PAUSE_PER_ROOM_S))
                await asyncio.sleep(max(0.0, started + pause - time.monotonic()))

    async def unsubscribe(self, sub: Subscriber) -> None:
        async with self._lock:
            feed = self._feeds.get(sub.room)
            if feed is None:
                return
            feed.subscribers.discard(sub)
            if not feed.subscribers:
                del self._feeds[sub.room]
                self._streams.pop(feed.stream, None)
                self._version += 1
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
            self._feeds, self._streams = {}, {}
        await stop_task(self._feed_task)
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            await self._feed_redis.delete(self._wake_key)
        await self._feed_redis.aclose()
        await stop_task(self._pubsub_task)
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            await self._pubsub.aclose()
        await self._pubsub_redis.aclose()

    def stats(self) -> dict[str, int]:
        return {
            "rooms": len(self._feeds),
            "subscribers": sum(len(f.subscribers) for f in self._feeds.values()),
        }
