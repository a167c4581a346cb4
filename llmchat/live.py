"""Ephemeral room events (live token deltas, typing): published, never stored.

The finished answer is a timeline entry; the deltas that lead to it travel over Redis pub/sub so
that every chat-service replica can show them while a model is still writing. On a Redis
Cluster they go over sharded pub/sub (SPUBLISH): only the node serving the room's slot carries
them, where plain PUBLISH would be broadcast to every node of the cluster.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from llmchat import keys
from llmchat.jsonfmt import compact_json
from llmchat.logs import get_logger
from llmchat.redis_conn import UNAVAILABLE_ERRORS, is_cluster

log = get_logger(__name__)

#: What an append's announcement starts with (``{"type":"appended","id":...}``): chat-service
#: takes it off the live channel before anything reaches a client.
APPENDED_PREFIX = '{"type":"appended"'


async def publish(redis: aioredis.Redis, room: str, event: dict[str, Any]) -> int:
    """Publish one event to the room's live channel; returns how many replicas received it."""
    channel, data = keys.live_channel(room), compact_json(event)
    if is_cluster(redis):
        return int(await redis.spublish(channel, data))
    return int(await redis.publish(channel, data))


async def announce_append(redis: aioredis.Redis, room: str, stream_id: str) -> None:
    """On a Redis Cluster, tell the replicas following ``room`` that it has a new entry.

    A replica there cannot block on one read over many rooms' streams (they lie on many slots),
    so it reads a room when this announcement arrives (and every room now and then, in case one
    was lost: it is pub/sub). On one Redis nothing is sent: the replicas' blocked read wakes by
    itself. The entry is stored whatever happens here; a failure is logged, not raised.
    """
    if not is_cluster(redis):
        return
    try:
        await redis.spublish(
            keys.live_channel(room), compact_json({"type": "appended", "id": stream_id})
        )
    except UNAVAILABLE_ERRORS as exc:
        log.warning("append_announce_failed", room=room, error=str(exc))
