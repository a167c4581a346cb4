"""The broker: this replica's reading of Redis for the rooms its clients are in.

``TimelineReader`` follows the timelines of every followed room with a single ``XREAD BLOCK``
and hands each new entry, its frame encoded once, to the hub; ``LiveReader`` carries the rooms'
ephemeral events over one pub/sub connection. What room to follow from which stream ID is
decided by ``chat_service.fanout``; who gets what is the hub's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import cast

from chat_service import metrics
from chat_service.hub import Hub
from chat_service.protocol import encode, live_frame, wire_entry
from llmchat import keys
from llmchat.ids import parse_stream_id
from llmchat.logs import get_logger
from llmchat.redis_conn import UNAVAILABLE_ERRORS, create_redis
from llmchat.tasks import stop_task
from llmchat.timeline import Rows, decode_entry

log = get_logger(__name__)

#: Seconds between timeline reads under load, per room followed (see ``TimelineReader._run``).
READ_PAUSE_PER_ROOM_S = 10e-6


class _Followed:
    """One room's stream and how far this replica has read it."""

    def __init__(self, room: str, start_id: str) -> None:
        self.room = room
        self.stream = keys.timeline(room)
        self.last_id = start_id


def deliver_rows(hub: Hub, followed: _Followed, rows: Rows) -> None:
    """Hand the entries after the room's last ID to the hub (each frame encoded once)."""
    room = followed.room
    last = parse_stream_id(followed.last_id)
    for sid, fields in rows:
        key = parse_stream_id(sid)
        if key <= last:  # read by an XREAD from before a re-subscribe (or a regroup)
            continue
        followed.last_id, last = sid, key
        try:
            entry = decode_entry(room, sid, fields)
        except (ValueError, KeyError) as exc:  # a foreign or corrupt entry
            log.error("feed_bad_entry", room=room, id=sid, error=str(exc))
            continue
        if hub.listened(room):
            hub.broadcast(room, ("wire", wire_entry(entry, key)))


def dispatch_live(hub: Hub, channels: dict[str, str], channel: str, data: str) -> None:
    """One published event to the room's subscribers, its frame encoded once."""
    room = channels.get(channel)
    if room is None or not hub.listened(room):
        return
    try:
        event = json.loads(data)
    except json.JSONDecodeError:
        log.error("live_bad_event", room=room)
        return
    if not isinstance(event, dict):
        return
    hub.broadcast(room, ("live", encode(live_frame(event))))


class TimelineReader:
    """Every followed room's timeline, read with one ``XREAD BLOCK`` over all their streams.

    A burst of posts across many rooms costs one round trip, not one per room, and the replica
    holds one reading connection, not one per room. A room added while that read is blocked
    wakes it through this replica's own wake stream, which the read includes: an XADD there
    returns the blocked XREAD at once, and a wake sent just before the read began is still seen,
    because the wake stream is read from its last seen ID. (On a Redis Cluster
    ``chat_service.broker_cluster`` reads per node instead.)
    """

    def __init__(self, redis_url: str, hub: Hub) -> None:
        self._hub = hub
        self._redis = create_redis(redis_url, socket_timeout=None)
        self._rooms: dict[str, _Followed] = {}
        self._streams: dict[str, _Followed] = {}  # timeline key -> room
        self._task: asyncio.Task[None] | None = None
        self._wake_key = keys.feed_wake(uuid.uuid4().hex)
        self._wake_last = "0-0"
        self._version = 0  # bumped whenever a room is added or removed
        self._reading: int | None = None  # the version of the XREAD in flight
        self._plan: tuple[list[_Followed], list[str]] = ([], [])
        self._plan_version = -1
        self._wake_sent = False
        self._has_rooms = asyncio.Event()
        self.reads = 0  # XREAD calls made (for tests)

    async def follow(self, room: str, start_id: str) -> None:
        """Read ``room``'s entries after ``start_id`` from now on."""
        followed = _Followed(room, start_id)
        self._rooms[room] = followed
        self._streams[followed.stream] = followed
        self._version += 1
        self._has_rooms.set()
        await self._wake(room)

    def unfollow(self, room: str) -> None:
        followed = self._rooms.pop(room, None)
        if followed is not None:
            self._streams.pop(followed.stream, None)
            self._version += 1

    async def _wake(self, room: str) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="feed-reader")
            return
        if self._reading is None or self._reading == self._version or self._wake_sent:
            return  # the next read includes the room, or a wake is already on its way
        self._wake_sent = True
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.xadd(self._wake_key, {"room": room}, maxlen=16, approximate=False)
            pipe.expire(self._wake_key, 3600)  # a replica that dies leaves nothing behind
            await pipe.execute()
        except UNAVAILABLE_ERRORS as exc:  # the reader retries and re-reads every room
            self._wake_sent = False
            log.warning("feed_wake_failed", room=room, error=str(exc))

    def _read_plan(self) -> tuple[list[_Followed], list[str]]:
        """The rooms to read and their stream keys (rebuilt only when rooms come or go)."""
        if self._plan_version != self._version:
            rooms = list(self._rooms.values())
            self._plan = (rooms, [f.stream for f in rooms] + [self._wake_key])
            self._plan_version = self._version
        return self._plan

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            if not self._rooms:
                self._has_rooms.clear()
                await self._has_rooms.wait()
                continue
            rooms, stream_keys = self._read_plan()
            ids = [followed.last_id for followed in rooms]
            ids.append(self._wake_last)
            self._reading = self._version
            self._wake_sent = False
            started = time.monotonic()
            try:
                resp = await self._redis.execute_command(  # type: ignore[no-untyped-call]
                    "XREAD", "COUNT", 500, "BLOCK", 5000, "STREAMS", *stream_keys, *ids
                )
                backoff = 0.05
            except UNAVAILABLE_ERRORS as exc:
                metrics.FEED_ERRORS.inc()
                log.warning("feed_redis_error", rooms=len(rooms), error=str(exc),
                            retry_in=backoff)  # fmt: skip
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            finally:
                self._reading = None
            self.reads += 1
            self._hand_over(cast(list[tuple[str, Rows]], resp or []))
            if resp:
                # A read costs O(rooms) (client and Redis), whatever it returns: under load,
                # let entries gather for a moment rather than read a few at a time. The pause
                # grows with the rooms followed: 2 ms for 200 rooms or fewer, 50 ms at 5,000.
                pause = min(0.05, max(0.002, len(rooms) * READ_PAUSE_PER_ROOM_S))
                await asyncio.sleep(max(0.0, started + pause - time.monotonic()))

    def _hand_over(self, resp: list[tuple[str, Rows]]) -> None:
        for stream, rows in resp:
            if stream == self._wake_key:
                if rows:
                    self._wake_last = rows[-1][0]
                continue
            followed = self._streams.get(stream)
            if followed is not None:
                self._deliver(followed, rows)

    def _deliver(self, followed: _Followed, rows: Rows) -> None:
        deliver_rows(self._hub, followed, rows)

    async def close(self) -> None:
        self._rooms, self._streams = {}, {}
        await stop_task(self._task)
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            await self._redis.delete(self._wake_key)
        await self._redis.aclose()


class LiveReader:
    """The followed rooms' ephemeral events (token deltas), over one pub/sub connection."""

    def __init__(self, redis_url: str, hub: Hub) -> None:
        self._hub = hub
        self._redis = create_redis(redis_url, socket_timeout=None)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._task: asyncio.Task[None] | None = None
        self._channels: dict[str, str] = {}  # channel -> room

    async def follow(self, room: str) -> None:
        channel = keys.live_channel(room)
        self._channels[channel] = room
        try:
            await self._pubsub.subscribe(channel)
        except UNAVAILABLE_ERRORS as exc:  # re-subscribed by the reader when Redis returns
            log.warning("live_subscribe_failed", room=room, error=str(exc))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="live-reader")

    async def unfollow(self, room: str) -> None:
        channel = keys.live_channel(room)
        self._channels.pop(channel, None)
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            await self._pubsub.unsubscribe(channel)

    async def _run(self) -> None:
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
            self._dispatch(str(msg["channel"]), str(msg["data"]))

    def _dispatch(self, channel: str, data: str) -> None:
        dispatch_live(self._hub, self._channels, channel, data)

    async def close(self) -> None:
        await stop_task(self._task)
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            await self._pubsub.aclose()
        await self._redis.aclose()
