"""A room's timeline on a Redis stream: atomic idempotent append, reads by cursor, follow.

The stream's entry IDs are the room's total order and the clients' resume cursor. Appends go
through one Lua script so that "store once per message id" and "the room exists" are checked
and applied atomically.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from llmchat import keys
from llmchat.ids import MAX_ID, START, parse_stream_id
from llmchat.models import Entry, NewEntry

#: Lua: whether the entry stored under a message id has another author or kind than the payload
#: being appended with that id. Re-sending one's own message is a duplicate (idempotent
#: retry); taking an id someone else used is a conflict, never a silent "already stored".
#: (An entry trimmed away cannot be compared: then it counts as a duplicate.)
OTHER_AUTHOR_LUA = """
local function other_author(timeline, stream_id, payload)
  local rows = redis.call('XRANGE', timeline, stream_id, stream_id)
  if not rows[1] then return false end
  local fields = rows[1][2]
  local raw = nil
  for i = 1, #fields, 2 do
    if fields[i] == 'd' then raw = fields[i + 1] end
  end
  if not raw then return false end
  local ok_old, old = pcall(cjson.decode, raw)
  local ok_new, new = pcall(cjson.decode, payload)
  if not ok_old or not ok_new then return true end
  return old['author'] ~= new['author'] or old['kind'] ~= new['kind']
end
"""

# KEYS: meta, timeline, msgids. ARGV: msg_id, payload.
# Returns {stream_id, duplicate(0/1)}; an error reply 'NOROOM' when the room does not exist,
# 'IDCONFLICT' when another author's entry has this message id.
_APPEND_LUA = (
    OTHER_AUTHOR_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOROOM room does not exist')
end
local existing = redis.call('HGET', KEYS[3], ARGV[1])
if existing then
  if other_author(KEYS[2], existing, ARGV[2]) then
    return redis.error_reply('IDCONFLICT message id taken by another author')
  end
  return {existing, 1}
end
local id = redis.call('XADD', KEYS[2], '*', 'm', ARGV[1], 'd', ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], id)
return {id, 0}
"""
)


#: Rows as redis-py returns them with ``decode_responses=True`` (its stubs are looser).
Rows = list[tuple[str, dict[str, str]]]


def _rows(value: object) -> Rows:
    return cast(Rows, value or [])


class RoomNotFoundError(LookupError):
    """The room named does not exist."""

    def __init__(self, room: str) -> None:
        super().__init__(f"room {room!r} does not exist")
        self.room = room


class MessageIdConflictError(ValueError):
    """The message id is already stored for another author (or kind) in the room."""

    def __init__(self, room: str, msg_id: str) -> None:
        super().__init__(
            f"message id {msg_id!r} is already used in room {room!r} by another author; "
            "choose another id"
        )
        self.room = room
        self.msg_id = msg_id


def raise_append_error(exc: aioredis.ResponseError, room: str, msg_id: str) -> None:
    """Turn the append scripts' error replies into exceptions (others are re-raised)."""
    text = str(exc)
    if text.startswith("NOROOM"):
        raise RoomNotFoundError(room) from exc
    if text.startswith("IDCONFLICT"):
        raise MessageIdConflictError(room, msg_id) from exc


@dataclass(frozen=True)
class AppendResult:
    entry: Entry
    duplicate: bool


def _encode(entry: NewEntry) -> str:
    return json.dumps(entry.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)


def decode_entry(room: str, stream_id: str, fields: dict[str, str]) -> Entry:
    data: dict[str, Any] = json.loads(fields["d"])
    data["id"] = stream_id
    data["room"] = room
    return Entry.model_validate(data)


class Timeline:
    """Operations on room timelines, over one Redis client."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._append = redis.register_script(_APPEND_LUA)

    async def append(self, room: str, entry: NewEntry) -> AppendResult:
        """Store ``entry`` once (by ``msg_id``); return the stored entry, even for a repeat."""
        try:
            res = await self._append(
                keys=[keys.room_meta(room), keys.timeline(room), keys.message_ids(room)],
                args=[entry.msg_id, _encode(entry)],
            )
        except aioredis.ResponseError as exc:
            raise_append_error(exc, room, entry.msg_id)
            raise
        stream_id, duplicate = str(res[0]), bool(int(res[1]))
        if not duplicate:
            return AppendResult(Entry(**entry.model_dump(), id=stream_id, room=room), False)
        stored = await self.get(room, stream_id)
        if stored is None:  # trimmed away; report what we know
            return AppendResult(Entry(**entry.model_dump(), id=stream_id, room=room), True)
        return AppendResult(stored, True)

    async def get(self, room: str, stream_id: str) -> Entry | None:
        rows = _rows(await self._redis.xrange(keys.timeline(room), min=stream_id, max=stream_id))
        if not rows:
            return None
        sid, fields = rows[0]
        return decode_entry(room, sid, fields)

    async def read_after(self, room: str, cursor: str = START, limit: int = 100) -> list[Entry]:
        """Up to ``limit`` entries strictly after ``cursor``, oldest first."""
        if parse_stream_id(cursor) == MAX_ID:
            return []
        rows = _rows(await self._redis.xrange(keys.timeline(room), min=f"({cursor}", count=limit))
        return [decode_entry(room, sid, fields) for sid, fields in rows]

    async def read_until(self, room: str, cut: str, limit: int) -> list[Entry]:
        """The last ``limit`` entries at or before ``cut``, oldest first (a context window)."""
        parse_stream_id(cut)
        rows = _rows(await self._redis.xrevrange(keys.timeline(room), max=cut, count=limit))
        return [decode_entry(room, sid, fields) for sid, fields in reversed(rows)]

    async def tail(self, room: str, limit: int) -> list[Entry]:
        """The newest ``limit`` entries, oldest first."""
        rows = _rows(await self._redis.xrevrange(keys.timeline(room), count=limit))
        return [decode_entry(room, sid, fields) for sid, fields in reversed(rows)]

    async def last_id(self, room: str) -> str:
        """The newest entry's ID, or ``0-0`` for an empty room."""
        rows = _rows(await self._redis.xrevrange(keys.timeline(room), count=1))
        return str(rows[0][0]) if rows else START

    async def length(self, room: str) -> int:
        return int(await self._redis.xlen(keys.timeline(room)))

    async def follow(
        self, room: str, cursor: str, *, block_ms: int = 5000, count: int = 500
    ) -> AsyncIterator[Entry]:
        """Every entry after ``cursor``, then new ones as they arrive (forever).

        Needs a client without a socket timeout shorter than ``block_ms``.
        """
        last = cursor
        while True:
            resp = await self._redis.xread({keys.timeline(room): last}, count=count, block=block_ms)
            for _stream, rows in cast(list[tuple[str, Rows]], resp or []):
                for sid, fields in rows:
                    last = sid
                    yield decode_entry(room, sid, fields)
