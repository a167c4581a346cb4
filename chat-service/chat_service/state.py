"""What a running chat-service holds: its clients to Redis, the stores and the fan-out."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis

from chat_service.fanout import Fanout
from chat_service.settings import ChatServiceSettings
from llmchat.auth import TokenSigner
from llmchat.ratelimit import ConnectionSlots, RateLimiter
from llmchat.rooms import RoomStore
from llmchat.router import Router
from llmchat.timeline import Timeline
from llmchat.users import UserStore


@dataclass
class ServiceState:
    settings: ChatServiceSettings
    redis: aioredis.Redis
    timeline: Timeline
    rooms: RoomStore
    fanout: Fanout
    router: Router
    replica: str
    signer: TokenSigner
    users: UserStore
    limiter: RateLimiter
    slots: ConnectionSlots
    redis_ok: bool = field(default=False)
