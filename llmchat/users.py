"""Registered user names: a name, once taken, belongs to whoever took it.

Each registration gets an id of its own (``uid``) that the user's tokens carry, and each user a
token version that their tokens carry too: a token is accepted only while its user's record
exists with that id and that version. So signing out (the version moves on) ends every token
of the user, and a token never outlives its user: a name deleted and taken again is a new
user, whom the old tokens do not name.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from pydantic import BaseModel

from llmchat import keys
from llmchat.batching import batcher_for
from llmchat.models import RESERVED_NAMES
from llmchat.names import looks_like_any, skeletons
from llmchat.redis_conn import is_cluster


class User(BaseModel):
    name: str
    created_at: float
    uid: str = ""  # "" for names registered before registrations had ids


@dataclass(frozen=True)
class Standing:
    """What a token is checked against on every use: the user's record and token version."""

    user: User | None
    version: int


def new_user(name: str) -> User:
    return User(name=name, created_at=time.time(), uid=secrets.token_hex(8))


def _reserved(name: str) -> None:
    reserved = looks_like_any(name, RESERVED_NAMES)
    if reserved is not None:
        alike = "" if reserved.casefold() == name.casefold() else f" (it looks like {reserved!r})"
        raise ValueError(f"name {name!r} is reserved{alike}")


class LookAlikeError(ValueError):
    """The name cannot be told apart from one already taken."""

    def __init__(self, name: str, taken: str) -> None:
        super().__init__(f"name {name!r} looks like {taken!r}, which is taken")
        self.name = name
        self.taken = taken


# KEYS: users, skeletons. ARGV: folded name, record JSON, skeleton 1..n.
# {1, record}: registered; {0, record}: the name was taken (its record); {2, name}: a look-alike
# of that (case-folded) name is taken. All claimed at once, so two look-alikes cannot race.
_REGISTER_LUA = """
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then return {0, existing} end
for i = 3, #ARGV do
  local holder = redis.call('HGET', KEYS[2], ARGV[i])
  if holder and holder ~= ARGV[1] and redis.call('HEXISTS', KEYS[1], holder) == 1 then
    return {2, holder}
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
for i = 3, #ARGV do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[1])
end
return {1, ARGV[2]}
"""


class UserStore:
    def __init__(self, redis_client: aioredis.Redis) -> None:
        self._redis = redis_client
        self._batch = batcher_for(redis_client)
        self._register = redis_client.register_script(_REGISTER_LUA)
        clustered = is_cluster(redis_client)
        self._users = keys.users(clustered)
        self._skeletons = keys.user_skeletons(clustered)
        self._versions = keys.user_versions(clustered)

    async def register(self, name: str) -> tuple[User, bool]:
        """Claim a name; returns (user, created). Reserved names and look-alikes of reserved
        names raise ValueError; a look-alike of a taken name raises LookAlikeError."""
        _reserved(name)
        user = new_user(name)
        reply = await self._register(
            keys=[self._users, self._skeletons],
            args=[name.casefold(), user.model_dump_json(), *sorted(skeletons(name))],
        )
        outcome, value = int(reply[0]), str(reply[1])
        if outcome == 2:
            holder = await self.get(value)
            raise LookAlikeError(name, holder.name if holder else value)
        return User.model_validate_json(value), outcome == 1

    async def index_skeletons(self) -> int:
        """Enter the names registered before skeletons were kept (idempotent; at start-up).
        Where two registered names look alike, the first keeps the skeleton."""
        raw = cast(dict[str, str], await self._redis.hgetall(self._users))
        if not raw:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for folded, record in raw.items():
                for key in skeletons(User.model_validate_json(record).name):
                    pipe.hsetnx(self._skeletons, key, folded)
            added = await pipe.execute()
        return sum(1 for x in added if x)

    async def get(self, name: str) -> User | None:
        raw = await self._redis.hget(self._users, name.casefold())
        return User.model_validate_json(raw) if raw else None

    async def standing(self, name: str) -> Standing:
        """The user's record and token version, in one round trip shared with other callers."""
        folded = name.casefold()
        raw, version = await self._batch.execute(
            [("HGET", self._users, folded), ("HGET", self._versions, folded)]
        )
        user = User.model_validate_json(cast(str, raw)) if raw else None
        return Standing(user, int(cast(str, version) or 0))

    async def sign_out(self, name: str) -> int:
        """End every token of the user (their version moves on); returns the new version."""
        return int(await self._redis.hincrby(self._versions, name.casefold(), 1))

    async def delete(self, name: str) -> bool:
        """Forget the user: the record, and their place in every room (members, invitations).
        Their tokens stop working at once; the name is free to be taken by someone new."""
        folded = name.casefold()
        user = await self.get(name)
        rooms = cast(list[str], await self._redis.zrange(keys.rooms_index(), 0, -1))
        held = sorted(skeletons(user.name if user else name))
        holders = await self._redis.hmget(self._skeletons, held)
        clustered = is_cluster(self._redis)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._users, folded)
            pipe.hdel(self._versions, folded)
            for key, holder in zip(held, holders, strict=True):
                if holder == folded:
                    pipe.hdel(self._skeletons, key)
            if not clustered:  # one Redis: the rooms go in the same transaction
                self._forget_in_rooms(pipe, rooms, folded)
            done: list[Any] = await pipe.execute()
        if clustered:
            # A cluster runs a transaction on one slot only: the user's record is gone first
            # (their tokens already fail), then their place in each room, room by room.
            async with self._redis.pipeline(transaction=False) as pipe:
                self._forget_in_rooms(pipe, rooms, folded)
                await pipe.execute()
        return bool(done[0])

    @staticmethod
    def _forget_in_rooms(pipe: Any, rooms: list[str], folded: str) -> None:
        for room in rooms:
            pipe.hdel(keys.members(room), folded)
            pipe.srem(keys.invitations(room), folded)


def ensure_users(
    client: redis.Redis | redis.RedisCluster, names: list[str]
) -> dict[str, tuple[User, int]]:
    """Register every free name of ``names`` (synchronously, one pipeline each way) and return
    each one's record and token version, by name: for tools that sign tokens next to a running
    system (benchmarks), which must name users that exist."""
    for name in names:
        _reserved(name)
    clustered = isinstance(client, redis.RedisCluster)
    users_key = keys.users(clustered)
    skeletons_key = keys.user_skeletons(clustered)
    versions_key = keys.user_versions(clustered)
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hsetnx(users_key, name.casefold(), new_user(name).model_dump_json())
            for key in skeletons(name):
                pipe.hsetnx(skeletons_key, key, name.casefold())
        pipe.execute()
    with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hget(users_key, name.casefold())
            pipe.hget(versions_key, name.casefold())
        replies = pipe.execute()
    out: dict[str, tuple[User, int]] = {}
    for i, name in enumerate(names):
        out[name] = (User.model_validate_json(replies[2 * i]), int(replies[2 * i + 1] or 0))
    return out
