r"""The broker on a Redis Cluster: the followed rooms' timelines read per node.

A cluster refuses any multi-key command whose keys lie on different slots, even when one node
serves them all, so one ``XREAD BLOCK`` cannot span several rooms there (each room is its own
slot). A blocked read per room would hold a connection per room; instead the followed rooms are
grouped by the master that serves their slot, and each master is read in one round trip per
pass: a pipeline of non-blocking ``XREAD``\s, one per slot, on one connection of it.

Reads follow posts, not rooms: every append on a cluster announces itself on the room's sharded
live channel (``llmchat.live.announce_append``), ``ClusterLiveReader`` hands the announcement
to ``ClusterTimelineReader.wake``, and the master's next pass reads only the rooms woken since
the last one. Pub/sub can lose a message (a reconnect, a failover), so every ``SAFETY_POLL_S``
a pass reads every followed room: an entry whose announcement was lost is late, never missed.

A pass refused with MOVED or ASK, or cut by a failed master, has the cluster asked again where
the slots are (the replica that took over), and the rooms are regrouped there, each still read
from its last ID: nothing is missed, nothing is handed over twice (the hub gets entries after
the room's last ID only).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import cast

from redis.crc import key_slot
from redis.exceptions import AskError, MovedError

from chat_service import metrics
from chat_service.broker import _Followed, deliver_rows
from chat_service.hub import Hub
from llmchat import keys
from llmchat.live import APPENDED_PREFIX
from llmchat.logs import get_logger
from llmchat.redis_conn import (
    UNAVAILABLE_ERRORS,
    as_cluster,
    create_node_client,
    create_redis,
    refresh_topology,
)
from llmchat.tasks import stop_task
from llmchat.timeline import Rows

log = get_logger(__name__)

#: Seconds between two passes that read every followed room of a master, woken or not (the
#: longest an entry whose announcement was lost waits to be read).
SAFETY_POLL_S = 1.0
#: Entries one XREAD returns at most; a room that filled it is read again at once.
READ_COUNT = 500

#: What ends a node's read: the node is gone, or its slots moved (MOVED, ASK).
READ_ERRORS: tuple[type[Exception], ...] = (*UNAVAILABLE_ERRORS, MovedError, AskError)
REGROUP_ERRORS: tuple[type[Exception], ...] = (*READ_ERRORS, RuntimeError)


class _NodeRead:
    """The rooms one master serves, read in one round trip per pass on a connection of it."""

    def __init__(self, owner: ClusterTimelineReader, name: str, host: str, port: int) -> None:
        self.owner = owner
        self.name = name
        self.client = create_node_client(host, port)
        self.streams: dict[str, _Followed] = {}
        self.task: asyncio.Task[None] | None = None
        self.woken: set[str] = set()  # streams announced since the last pass
        self.wakeup = asyncio.Event()

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"feed-reader-{self.name}")

    async def add(self, followed: _Followed) -> None:
        self.streams[followed.stream] = followed
        self.wake(followed.stream)  # read at once: something may have come since its start ID

    def remove(self, stream: str) -> None:
        self.streams.pop(stream, None)

    def wake(self, stream: str) -> None:
        self.woken.add(stream)
        self.wakeup.set()

    def _targets(self, full: bool) -> list[list[_Followed]]:
        """The rooms this pass reads (every one, or those woken), grouped by slot."""
        chosen = (
            list(self.streams.values())
            if full
            else [self.streams[s] for s in self.woken if s in self.streams]
        )
        self.woken.clear()
        self.wakeup.clear()
        groups: dict[int, list[_Followed]] = {}
        for followed in chosen:
            groups.setdefault(key_slot(followed.stream.encode("utf-8")), []).append(followed)
        return list(groups.values())

    async def _run(self) -> None:
        backoff = 0.05
        next_full = 0.0
        while self.streams:
            full = time.monotonic() >= next_full
            if full:
                next_full = time.monotonic() + SAFETY_POLL_S
            groups = self._targets(full)
            if groups:
                try:
                    await self._read(groups)
                    backoff = 0.05
                except READ_ERRORS as exc:
                    metrics.FEED_ERRORS.inc()
                    log.warning("feed_redis_error", node=self.name, rooms=len(self.streams),
                                error=str(exc), retry_in=backoff)  # fmt: skip
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    next_full = 0.0  # read everything once the rooms are regrouped
                    await self.owner.regroup()
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), max(0.0, next_full - time.monotonic()))

    async def _read(self, groups: list[list[_Followed]]) -> None:
        """One round trip: an XREAD per slot; what they return goes to the hub."""
        pipe = self.client.pipeline(transaction=False)
        for group in groups:
            pipe.execute_command(
                "XREAD", "COUNT", READ_COUNT, "STREAMS",
                *(f.stream for f in group), *(f.last_id for f in group),
            )  # fmt: skip
        replies = await pipe.execute()
        self.owner.reads += 1
        for resp in replies:
            for stream, rows in cast(list[tuple[str, Rows]], resp or []):
                followed = self.streams.get(stream)
                if followed is not None and rows:
                    deliver_rows(self.owner.hub, followed, rows)
                    if len(rows) >= READ_COUNT:  # more are waiting
                        self.woken.add(followed.stream)
                        self.wakeup.set()

    async def close(self) -> None:
        await stop_task(self.task)
        await self.client.aclose()


class ClusterTimelineReader:
    """``TimelineReader``'s interface over a Redis Cluster: one blocked read per master."""

    def __init__(self, redis_url: str, hub: Hub) -> None:
        self.hub = hub
        self._redis = create_redis(redis_url, socket_timeout=None)
        self._rooms: dict[str, _Followed] = {}
        self._placed: dict[str, _NodeRead] = {}  # room -> the node read that has it
        self._nodes: dict[str, _NodeRead] = {}
        self._lock = asyncio.Lock()
        self._retired: list[_NodeRead] = []
        self.reads = 0  # XREAD calls made, over every node (for tests)

    async def follow(self, room: str, start_id: str) -> None:
        followed = _Followed(room, start_id)
        async with self._lock:
            self._rooms[room] = followed
            await self._place(followed)

    def unfollow(self, room: str) -> None:
        followed = self._rooms.pop(room, None)
        node = self._placed.pop(room, None)
        if followed is not None and node is not None:
            node.remove(followed.stream)

    async def _place(self, followed: _Followed) -> None:
        cluster = as_cluster(self._redis)
        await cluster.initialize()
        node = cluster.get_node_from_key(followed.stream)
        if node is None:
            raise RuntimeError(f"no node serves {followed.stream}")
        current = self._placed.get(followed.room)
        if current is not None and current.name == node.name:
            return
        if current is not None:
            current.remove(followed.stream)
        read = self._nodes.get(node.name)
        if read is None or read.task is None or read.task.done():
            if read is not None:
                self._retired.append(read)
            read = self._nodes[node.name] = _NodeRead(self, node.name, node.host, int(node.port))
            self._placed[followed.room] = read
            await read.add(followed)
            read.start()
            return
        self._placed[followed.room] = read
        await read.add(followed)

    async def regroup(self) -> None:
        """Ask the cluster where the slots are now and move each room to its master's read."""
        async with self._lock:
            await refresh_topology(self._redis)
            for followed in list(self._rooms.values()):
                try:
                    await self._place(followed)
                except REGROUP_ERRORS as exc:
                    log.warning("feed_regroup_failed", room=followed.room, error=str(exc))
            if self._retired:
                retired, self._retired = self._retired, []
                for read in retired:
                    if read.task is not asyncio.current_task():
                        await read.close()

    def wake(self, room: str) -> None:
        """``room`` has a new entry (announced): its master's next pass reads it."""
        read = self._placed.get(room)
        followed = self._rooms.get(room)
        if read is not None and followed is not None:
            read.wake(followed.stream)

    @property
    def nodes_reading(self) -> int:
        return sum(1 for r in self._nodes.values() if r.streams)

    async def close(self) -> None:
        self._rooms, self._placed = {}, {}
        for read in [*self._nodes.values(), *self._retired]:
            await read.close()
        self._nodes = {}
        await self._redis.aclose()


class ClusterLiveReader:
    """The followed rooms' ephemeral events over sharded pub/sub (SSUBSCRIBE): redis-py's
    ``ClusterPubSub`` keeps one connection per node serving a followed room and moves a
    subscription to the new master after a failover."""

    def __init__(
        self, redis_url: str, hub: Hub, on_appended: Callable[[str], None] | None = None
    ) -> None:
        self._hub = hub
        self._on_appended = on_appended
        self._redis = create_redis(redis_url, socket_timeout=None)
        self._pubsub = as_cluster(self._redis).pubsub(ignore_subscribe_messages=True)
        self._task: asyncio.Task[None] | None = None
        self._channels: dict[str, str] = {}

    async def follow(self, room: str) -> None:
        channel = keys.live_channel(room)
        self._channels[channel] = room
        try:
            await self._pubsub.ssubscribe(channel)
        except UNAVAILABLE_ERRORS as exc:
            log.warning("live_subscribe_failed", room=room, error=str(exc))
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="live-reader")

    async def unfollow(self, room: str) -> None:
        channel = keys.live_channel(room)
        self._channels.pop(channel, None)
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            await self._pubsub.sunsubscribe(channel)

    async def _run(self) -> None:
        """One reading task per node holding followed channels, kept in step with them."""
        readers: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                names = set(self._pubsub.node_pubsub_mapping)
                for name in list(readers):
                    if name not in names or readers[name].done():
                        await stop_task(readers.pop(name))
                for name in names - set(readers):
                    readers[name] = asyncio.create_task(self._read_node(name), name=f"live-{name}")
                await asyncio.sleep(0.2)
        finally:
            for task in readers.values():
                await stop_task(task)

    async def _read_node(self, name: str) -> None:
        """The messages of one node's sharded subscriptions, waited for on its connection alone:
        asked without naming a node, redis-py polls the nodes in turn and splits the wait between
        them, so a message on one node would wait out the others' share."""
        from chat_service.broker import dispatch_live  # noqa: PLC0415 - shared with LiveReader

        backoff = 0.05
        while True:
            node = as_cluster(self._redis).get_node(node_name=name)
            if node is None:
                return
            started = time.monotonic()
            try:
                msg = await self._pubsub.get_sharded_message(timeout=1.0, target_node=node)
                backoff = 0.05
            except UNAVAILABLE_ERRORS as exc:
                log.warning("live_reader_error", node=name, error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            if msg is None and time.monotonic() - started < 0.1:  # nothing to wait on yet
                await asyncio.sleep(0.05)
            if msg is None or msg.get("type") != "smessage":
                continue
            channel, data = str(msg["channel"]), str(msg["data"])
            if data.startswith(APPENDED_PREFIX):  # a new entry: wake the timeline read
                room = self._channels.get(channel)
                if room is not None and self._on_appended is not None:
                    self._on_appended(room)
                continue
            dispatch_live(self._hub, self._channels, channel, data)

    async def close(self) -> None:
        await stop_task(self._task)
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            await self._pubsub.aclose()
        await self._redis.aclose()
