"""Which models of a room are alive: replicas refresh an expiring heartbeat key per room."""

from __future__ import annotations

import redis.asyncio as aioredis

from llmchat import keys


async def healthy_models(redis: aioredis.Redis, room: str) -> set[str]:
    """Models with at least one replica whose heartbeat has not lapsed."""
    found: set[str] = set()
    prefix = keys.alive_prefix(room)
    async for key in redis.scan_iter(match=prefix + "*", count=200):
        name = str(key)[len(prefix) :].split(":", 1)[0]
        if name:
            found.add(name)
    return found
