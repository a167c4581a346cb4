"""A worker's heartbeat: expiring per-room liveness keys (elections leave out models whose keys
lapsed), and its load for the rooms' affinity."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from llmchat import keys
from llmchat.redis_conn import UNAVAILABLE_ERRORS
from model_worker.affinity import Affinity
from model_worker.settings import WorkerSettings

HEARTBEAT_TTL_MS = 3000
HEARTBEAT_EVERY_S = 1.0


async def heartbeat(
    stop: asyncio.Event,
    redis: aioredis.Redis,
    *,
    model: str,
    settings: WorkerSettings,
    serving: Callable[[], bool],
    affinity: Affinity | None,
    load: Callable[[], int],
) -> None:
    """Every second while ``serving()``: this replica is alive in each room (and its load)."""
    while not stop.is_set():
        if serving():
            try:
                pipe = redis.pipeline(transaction=False)
                for room in settings.rooms:
                    key = keys.alive(room, model, settings.consumer)
                    pipe.set(key, f"{time.time():.3f}", px=HEARTBEAT_TTL_MS)
                await pipe.execute()
                if affinity is not None:
                    await affinity.set_load(load())
            except UNAVAILABLE_ERRORS:
                pass
        await asyncio.sleep(HEARTBEAT_EVERY_S)
