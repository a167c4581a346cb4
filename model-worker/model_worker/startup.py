"""What a worker does before taking jobs: register the room the operator configured, create its
queues' consumer groups; each step retried while Redis is away (it may start after us)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from llmchat.keys import LEADER_QUEUE
from llmchat.logs import get_logger
from llmchat.models import RoomCreate
from llmchat.redis_conn import UNAVAILABLE_ERRORS
from llmchat.rooms import RoomStore
from model_worker.jobs import JobQueue
from model_worker.settings import WorkerSettings

log = get_logger(__name__)
#: Attempts, and the pause between them, while Redis is unreachable (30 s in all).
ATTEMPTS = 60
PAUSE_S = 0.5


async def retry(op: Callable[[], Awaitable[object]]) -> None:
    """Run ``op``, again while Redis is unreachable; RuntimeError after ``ATTEMPTS``."""
    for attempt in range(ATTEMPTS):
        try:
            await op()
            return
        except UNAVAILABLE_ERRORS as exc:
            log.warning("worker_redis_wait", error=str(exc), attempt=attempt)
            await asyncio.sleep(PAUSE_S)
    raise RuntimeError("Redis stayed unreachable for 30 s")


async def prepare(settings: WorkerSettings, rooms: RoomStore, queue: JobQueue) -> None:
    """Register the configured room (so chat-service serves it), then create the groups of
    this model's queue and the leader queue in every room."""
    config = settings.room_config
    if config is not None:
        spec = RoomCreate.model_validate_json(config.read_text())
        await retry(lambda: rooms.upsert(spec))
    for room in settings.rooms:
        for name in (settings.model_name, LEADER_QUEUE):
            await retry(functools.partial(queue.ensure_group, room, name))
