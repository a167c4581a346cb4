"""Ephemeral room events (live token deltas, typing): published, never stored.

The finished answer is a timeline entry; the deltas that lead to it travel over Redis pub/sub so
that every chat-service replica can show them while a model is still writing.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from llmchat import keys
from llmchat.jsonfmt import compact_json


async def publish(redis: aioredis.Redis, room: str, event: dict[str, Any]) -> int:
    """Publish one event to the room's live channel; returns how many replicas received it."""
    return int(await redis.publish(keys.live_channel(room), compact_json(event)))
