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
from llmchat.redis_conn import is_cluster


async def publish(redis: aioredis.Redis, room: str, event: dict[str, Any]) -> int:
    """Publish one event to the room's live channel; returns how many replicas received it."""
    channel, data = keys.live_channel(room), compact_json(event)
    if is_cluster(redis):
        return int(await redis.spublish(channel, data))
    return int(await redis.publish(channel, data))
