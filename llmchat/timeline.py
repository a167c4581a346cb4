"""A room's timeline on a Redis stream: atomic idempotent append, reads by cursor.

The stream's entry IDs are the room's total order and the clients' resume cursor. Appends go
through one Lua script so that "store once per message id" and "the room exists" are checked
and applied atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis

from llmchat import keys
from llmchat.ids import MAX_ID, START, parse_stream_id
from llmchat.jsonfmt import compact_json
from llmchat.live import announce_append
from llmchat.models import Entry, NewEntry

#: Lua: append one entry to a room's timeline, once per message id. ``append_entry(meta,
#: timeline, msgids, msg_id, payload, before_store)`` returns ``{stream_id, 1}`` when the id is
#: already stored, ``{stream_id, 0}`` when it stored the entry now, or an error reply:
#: ``NOROOM`` (no room), ``IDCONFLICT`` (another author's or kind's entry has this id: re-sending
#: one's own message is an idempotent retry, taking an id someone else used is a conflict, never
#: a silent "already stored"; an entry trimmed away cannot be compared and counts as a
#: duplicate), or whatever ``before_store`` (optional: a function returning an error reply to
#: refuse, or nil) returned. ``Timeline.append`` and ``Router.post`` both append through it.
APPEND_LUA = """
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

local function append_entry(meta, timeline, msgids, msg_id, payload, before_store)
  if redis.call('EXISTS', meta) == 0 then
    return redis.error_reply('NOROOM room does not exist')
  end
  local existing = redis.call('HGET', msgids, msg_id)
  if existing then
    if other_author(timeline, existing, payload) then
      return redis.error_reply('IDCONFLICT message id taken by another author')
    end
    return {existing, 1}
  end
  if before_store then
    local refused = before_store()
    if refused then return refused end
  end
  local id = redis.call('XADD', timeline, '*', 'm', msg_id, 'd', payload)
  redis.call('HSET', msgids, msg_id, id)
  return {id, 0}
end
"""

# KEYS: meta, timeline, msgids. ARGV: msg_id, payload. Returns what ``append_entry`` returns.
_APPEND_ONE_LUA = APPEND_LUA + "return append_entry(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])\n"


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


def encode_entry(entry: NewEntry) -> str:
    """The stored form of an entry (the stream field ``d``): its compact JSON."""
    return compact_json(entry.model_dump(mode="json"))


def decode_entry(room: str, stream_id: str, fields: dict[str, str]) -> Entry:
    data: dict[str, Any] = json.loads(fields["d"])
    data["id"] = stream_id
    data["room"] = room
    return Entry.model_validate(data)


class Timeline:
    """Operations on room timelines, over one Redis client."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._append = redis.register_script(_APPEND_ONE_LUA)

    async def append(self, room: str, entry: NewEntry) -> AppendResult:
        """Store ``entry`` once (by ``msg_id``); return the stored entry, even for a repeat."""
        try:
            res = await self._append(
                keys=[keys.room_meta(room), keys.timeline(room), keys.message_ids(room)],
                args=[entry.msg_id, encode_entry(entry)],
            )
        except aioredis.ResponseError as exc:
            raise_append_error(exc, room, entry.msg_id)
            raise
        return await self.appended(room, entry, str(res[0]), bool(int(res[1])))

    async def appended(
        self, room: str, entry: NewEntry, stream_id: str, duplicate: bool
    ) -> AppendResult:
        """What an append of ``entry`` stored: the entry as given, or for a repeated message id
        the entry stored first (as given when it has been trimmed away since)."""
        if duplicate:
            stored = await self.get(room, stream_id)
            if stored is not None:
                return AppendResult(stored, True)
        else:
            await announce_append(self._redis, room, stream_id)
        return AppendResult(Entry(**entry.model_dump(), id=stream_id, room=room), duplicate)

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
