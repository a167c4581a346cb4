"""Registered user names: a name, once taken, belongs to whoever took it."""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from pydantic import BaseModel

from llmchat import keys
from llmchat.models import RESERVED_NAMES


class User(BaseModel):
    name: str
    created_at: float


class UserStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    async def register(self, name: str) -> tuple[User, bool]:
        """Claim a name; returns (user, created). Reserved names raise ValueError."""
        if name.casefold() in RESERVED_NAMES:
            raise ValueError(f"name {name!r} is reserved")
        user = User(name=name, created_at=time.time())
        created = await self._redis.hsetnx(keys.users(), name.casefold(), user.model_dump_json())
        if created:
            return user, True
        existing = await self.get(name)
        return (existing or user), False

    async def get(self, name: str) -> User | None:
        raw = await self._redis.hget(keys.users(), name.casefold())
        return User.model_validate_json(raw) if raw else None
