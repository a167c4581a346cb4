"""Rooms and their members, stored in Redis; and the rules of a room: who may know of it, how
large a message and how many messages a person may post in it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis

from llmchat import keys
from llmchat.models import RESERVED_NAMES, Member, Room, RoomCreate, RoomVisibility
from llmchat.names import looks_like_any
from llmchat.ratelimit import Limit
from llmchat.timeline import RoomNotFoundError


class RoomExistsError(ValueError):
    def __init__(self, room: str) -> None:
        super().__init__(f"room {room!r} already exists")
        self.room = room


class NameTakenError(ValueError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"name {name!r} is not available: {reason}")
        self.name = name


@dataclass(frozen=True)
class Access:
    """A room (None: it does not exist) and one person's standing in it."""

    room: Room | None
    member: Member | None
    invited: bool


def may_see(room: Room, *, admin: bool, member: bool, invited: bool) -> bool:
    """Whether someone may know of ``room``: anyone a public room; an invitation-only room its
    members and the invited only (and the admin every room)."""
    return admin or room.visibility == RoomVisibility.PUBLIC or member or invited


def max_message_bytes(room: Room, service_limit: int) -> int:
    """The largest message text in ``room``: its own limit within the service's."""
    own = room.limits.max_message_bytes
    return min(own, service_limit) if own else service_limit


def user_limit(room: Room, service_limit: Limit) -> Limit:
    """The per-person message limit in a room: the room's own, else the service's."""
    own = room.limits
    return Limit(
        own.messages_per_minute
        if own.messages_per_minute is not None
        else service_limit.per_minute,
        own.burst if own.burst is not None else service_limit.burst,
    )


def user_bucket(room: Room, user: str) -> str:
    """Whose bucket a person's message takes from: one per person across the rooms on the
    service's limit, and one per person *and room* in a room with limits of its own. A bucket
    is only ever refilled at one rate to one size, so a room with generous limits cannot fill
    up the bucket another room's limit drains (room names hold no '/', so the key is
    unambiguous)."""
    own = room.limits.messages_per_minute is not None or room.limits.burst is not None
    return f"{room.name}/{user.casefold()}" if own else user.casefold()


class ParsedRooms:
    """Rooms' stored JSON -> their parsed documents, parsed again only when the JSON changed
    (a room's document is read with every post and every access check)."""

    #: Documents kept at most (then the cache starts afresh).
    MAX_ROOMS = 10_000

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[bytes | str, Room]] = {}

    def parse(self, name: str, raw: bytes | str) -> Room:
        cached = self._parsed.get(name)
        if cached is not None and cached[0] == raw:
            return cached[1]
        room = Room.model_validate_json(raw)
        if len(self._parsed) > self.MAX_ROOMS:
            self._parsed.clear()
        self._parsed[name] = (raw, room)
        return room


class RoomStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._parsed = ParsedRooms()

    async def access(self, name: str, user: str | None) -> Access:
        """The room and whether ``user`` (None: nobody, e.g. the admin) is a member or invited.

        One round trip with the same three reads whether the room exists, is public, or is
        hidden from the caller: a room one may not see costs exactly what a missing one does,
        so timing tells nothing about which it is.
        """
        folded = (user or "").casefold()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.room_meta(name))
            pipe.hget(keys.members(name), folded)
            pipe.sismember(keys.invitations(name), folded)
            raw, member_raw, invited = await pipe.execute()
        return Access(
            self._parsed.parse(name, raw) if raw else None,
            Member.model_validate_json(member_raw) if member_raw and user else None,
            bool(invited) and user is not None,
        )

    async def create(self, spec: RoomCreate) -> Room:
        room = Room(**spec.model_dump(), created_at=time.time())
        created = await self._redis.set(keys.room_meta(room.name), room.model_dump_json(), nx=True)
        if not created:
            raise RoomExistsError(room.name)
        await self._redis.zadd(keys.rooms_index(), {room.name: room.created_at})
        return room

    async def upsert(self, spec: RoomCreate) -> Room:
        """Create or replace a room's configuration (used by `llmchat up` and the operator)."""
        existing = await self.get(spec.name)
        created_at = existing.created_at if existing else time.time()
        room = Room(**spec.model_dump(), created_at=created_at)
        await self._redis.set(keys.room_meta(room.name), room.model_dump_json())
        await self._redis.zadd(keys.rooms_index(), {room.name: room.created_at})
        return room

    async def get(self, name: str) -> Room | None:
        raw = await self._redis.get(keys.room_meta(name))
        return Room.model_validate_json(raw) if raw else None

    async def require(self, name: str) -> Room:
        room = await self.get(name)
        if room is None:
            raise RoomNotFoundError(name)
        return room

    async def all(self, limit: int = 1000) -> list[Room]:
        names = cast(list[str], await self._redis.zrange(keys.rooms_index(), 0, limit - 1))
        if not names:
            return []
        # one GET per room in a pipeline, not MGET: on a cluster the rooms live on many slots
        async with self._redis.pipeline(transaction=False) as pipe:
            for n in names:
                pipe.get(keys.room_meta(n))
            raws = await pipe.execute()
        return [Room.model_validate_json(r) for r in raws if r]

    async def join(self, room: Room, name: str) -> tuple[Member, bool]:
        """Add a person to the room; returns (member, created). Re-joining is idempotent."""
        folded = name.casefold()
        model = looks_like_any(name, room.model_names())
        if model is not None:
            if model.casefold() == folded:
                raise NameTakenError(name, "a model in this room has that name")
            raise NameTakenError(name, f"it looks like {model!r}, a model in this room")
        if looks_like_any(name, RESERVED_NAMES) is not None:
            raise NameTakenError(name, "it is reserved")
        member = Member(name=name, joined_at=time.time())
        created = await self._redis.hsetnx(
            keys.members(room.name), folded, member.model_dump_json()
        )
        if created:
            return member, True
        raw = await self._redis.hget(keys.members(room.name), folded)
        return (Member.model_validate_json(raw) if raw else member), False

    async def member(self, room: str, name: str) -> Member | None:
        raw = await self._redis.hget(keys.members(room), name.casefold())
        return Member.model_validate_json(raw) if raw else None

    async def members(self, room: str) -> list[Member]:
        raws = await self._redis.hvals(keys.members(room))
        return sorted((Member.model_validate_json(r) for r in raws), key=lambda m: m.joined_at)

    async def invite(self, room: str, name: str) -> bool:
        """Invite a person to a room; returns False when they were already invited."""
        return bool(await self._redis.sadd(keys.invitations(room), name.casefold()))

    async def invited(self, room: str, name: str) -> bool:
        return bool(await self._redis.sismember(keys.invitations(room), name.casefold()))

    async def standing(self, names: list[str], user: str) -> list[tuple[bool, bool]]:
        """For each room name, whether ``user`` is (a member, invited) (one round trip)."""
        folded = user.casefold()
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hexists(keys.members(name), folded)
                pipe.sismember(keys.invitations(name), folded)
            flags = await pipe.execute()
        return [(bool(flags[i]), bool(flags[i + 1])) for i in range(0, len(flags), 2)]

    async def leave(self, room: str, name: str) -> bool:
        """Take a person out of the room; False when they were not in it."""
        return bool(await self._redis.hdel(keys.members(room), name.casefold()))

    async def uninvite(self, room: str, name: str) -> bool:
        """Withdraw an invitation; False when there was none."""
        return bool(await self._redis.srem(keys.invitations(room), name.casefold()))

    async def invitations(self, room: str) -> list[str]:
        """The (case-folded) names invited to the room, sorted."""
        return sorted(cast(set[str], await self._redis.smembers(keys.invitations(room))))
