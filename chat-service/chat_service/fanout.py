"""Fan-out: each replica follows the timelines of the rooms its clients are in.

``Fanout`` ties the hub (who listens to which room, ``chat_service.hub``) to the broker (the
Redis reading, ``chat_service.broker``): a room's first subscriber on this replica starts its
reading, its last one stops it. A subscriber registers *before* it reads its backlog, and the
room's start ID is fixed before registration, so between backlog and live feed nothing is
missed; the subscriber drops what it has already sent by comparing stream IDs.
"""

from __future__ import annotations

import asyncio

from chat_service.broker import LiveReader, TimelineReader
from chat_service.broker_cluster import ClusterLiveReader, ClusterTimelineReader
from chat_service.hub import Hub, Subscriber
from llmchat.redis_conn import detect_cluster
from llmchat.timeline import Timeline


class Fanout:
    """The hub of this replica and the readers that feed it."""

    def __init__(self, redis_url: str, timeline: Timeline, queue_limit: int) -> None:
        self._timeline = timeline
        self.hub = Hub(queue_limit)
        self._entries: TimelineReader | ClusterTimelineReader
        self._live: LiveReader | ClusterLiveReader
        if detect_cluster(redis_url):  # reads per master woken by announcements (sharded pub/sub)
            cluster_entries = ClusterTimelineReader(redis_url, self.hub)
            self._entries = cluster_entries
            self._live = ClusterLiveReader(redis_url, self.hub, on_appended=cluster_entries.wake)
        else:
            self._entries = TimelineReader(redis_url, self.hub)
            self._live = LiveReader(redis_url, self.hub)
        self._lock = asyncio.Lock()

    @property
    def reads(self) -> int:
        """Timeline reads (XREAD calls) made so far (for tests)."""
        return self._entries.reads

    async def subscribe(self, room: str) -> Subscriber:
        """Register a subscriber; entries appended after this returns reach it through its queue."""
        async with self._lock:
            if not self.hub.listened(room):
                await self._entries.follow(room, await self._timeline.last_id(room))
                await self._live.follow(room)
            return self.hub.add(room)

    async def unsubscribe(self, sub: Subscriber) -> None:
        async with self._lock:
            if self.hub.remove(sub):
                self._entries.unfollow(sub.room)
                await self._live.unfollow(sub.room)

    def stats(self) -> dict[str, int]:
        return self.hub.stats()

    async def close(self) -> None:
        async with self._lock:
            self.hub.clear()
        await self._entries.close()
        await self._live.close()
