"""The router: which models answer a message.

``decide`` is a pure function of the room, the message and the room's state: ``@model`` mentions
first; otherwise the room's mode. In ``leader`` mode the turn goes to the leader queue, which only
the holder of the room's leadership lease reads (so a failover needs no re-routing); every Nth
turn, and the first turn after a leader failed, is a round that asks every model and is judged.
In ``all`` mode every turn is a round. A model's answer that mentions another model asks that
model too, until the room's cap on consecutive model replies.

``Router.post`` stores the message, writes its jobs and records its round in one Lua script, so a
message is never stored without its jobs, and a repeated message id enqueues nothing. A leader's
answer carries a fence (the lease and its term): if the lease has moved on, it is refused.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import AskError, MovedError
from redis.exceptions import ConnectionError as RedisConnectionError

from llmchat import keys
from llmchat.batching import BatchScript, CommandBatcher, batcher_for
from llmchat.durability import Durability
from llmchat.ids import server_msg_id
from llmchat.keys import LEADER_QUEUE
from llmchat.lease import FENCE_LUA, now_ms
from llmchat.models import Entry, EntryKind, NewEntry, Room, RoomMode
from llmchat.redis_conn import (
    UNAVAILABLE_ERRORS,
    is_cluster,
    master_client,
    refresh_topology,
    same_slot,
)
from llmchat.rooms import ParsedRooms
from llmchat.timeline import (
    APPEND_LUA,
    AppendResult,
    RoomNotFoundError,
    Timeline,
    encode_entry,
    raise_append_error,
)

MENTION_RE = re.compile(r"(?<![\w@])@([A-Za-z0-9][A-Za-z0-9_.-]{0,39})")
EVERYONE = frozenset({"all", "everyone", "models"})
#: Cap on a job queue's length (approximate trimming keeps XADD O(1)).
QUEUE_MAXLEN = 10_000
#: Seconds the judge waits for a round's answers before judging what it has.
ROUND_DEADLINE_S = 120.0


def mentions(text: str) -> list[str]:
    """``@names`` in order of first appearance, without trailing punctuation."""
    seen: dict[str, None] = {}
    for match in MENTION_RE.finditer(text):
        seen.setdefault(match.group(1).rstrip(".-_"), None)
    return list(seen)


@dataclass(frozen=True)
class Route:
    """Queues to write a job to (model names, or the leader queue) and why."""

    targets: list[str]
    reason: str
    unknown: list[str] = field(default_factory=list)
    capped: bool = False

    @property
    def is_round(self) -> bool:
        """A turn answered by several models, from one cut: the judge scores it."""
        return len([t for t in self.targets if t != LEADER_QUEUE]) >= 2


def decide(
    room: Room,
    *,
    kind: EntryKind,
    author: str,
    text: str,
    members: set[str],
    streak: int,
    max_model_streak: int,
    turn: int = 1,
    round_due: bool = False,
) -> Route:
    """Which queues get a job for this message, and why (pure: no I/O).

    ``turn`` is the number this human message will have among the room's human turns.
    """
    models = room.model_names()
    named = mentions(text)
    lowered = [n.lower() for n in named]
    wanted = [m for m in dict.fromkeys(lowered) if m in models]
    everyone = any(n in EVERYONE for n in lowered)
    folded_members = {m.casefold() for m in members}
    unknown = [
        n
        for n in named
        if n.lower() not in models
        and n.lower() not in EVERYONE
        and n.casefold() not in folded_members
    ]
    if kind == EntryKind.MODEL:
        targets = [m for m in (models if everyone else wanted) if m != author]
        if targets and streak >= max_model_streak:
            return Route([], "cap", unknown, capped=True)
        return Route(targets, "mention" if targets else "none", unknown)
    if kind != EntryKind.HUMAN or not models:
        return Route([], "none", unknown)
    if everyone:
        return Route(list(models), "everyone", unknown)
    if wanted:
        return Route(wanted, "mention", unknown)
    if room.mode == RoomMode.ALL:
        return Route(list(models), "all", unknown)
    if len(models) >= 2 and round_due:
        return Route(list(models), "round-after-failover", unknown)
    if len(models) >= 2 and room.round_every and turn % room.round_every == 0:
        return Route(list(models), "round", unknown)
    return Route([LEADER_QUEUE], "leader", unknown)


# KEYS: meta, timeline, msgids, streak, turns, round_due, rounds, fence_lease, queue_1..n
# ARGV: msg_id, payload, streak_mode ("reset"|"incr"|"keep"), reason, enqueued_at, maxlen,
#       is_round ("1"|"0"), models_json, fence_holder ("" = no fence), fence_term, now_ms,
#       target_1..n
# The entry is appended as ``Timeline.append`` appends it (``APPEND_LUA``), refused before it is
# stored when a fence is given and the lease has moved on; the jobs and the round follow it,
# with the fields ``llmchat.wire`` describes (JOB_FIELDS, ROUND_FIELDS) and parses.
_POST_LUA = (
    FENCE_LUA
    + APPEND_LUA
    + """
local res = append_entry(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], function()
  if ARGV[9] ~= '' and fenced(KEYS[8], ARGV[9], ARGV[10], ARGV[11]) then
    return redis.error_reply('FENCED the leadership lease has moved on')
  end
end)
if res['err'] or res[2] == 1 then return res end
local id = res[1]
if ARGV[3] == 'reset' then
  redis.call('SET', KEYS[4], 0)
  redis.call('INCR', KEYS[5])
elseif ARGV[3] == 'incr' then
  redis.call('INCR', KEYS[4])
end
for i = 9, #KEYS do
  redis.call('XADD', KEYS[i], 'MAXLEN', '~', ARGV[6], '*',
    'cut', id, 'msg', ARGV[1], 'reason', ARGV[4], 'ts', ARGV[5], 'model', ARGV[i + 3])
end
if ARGV[7] == '1' then
  redis.call('DEL', KEYS[6])
  redis.call('XADD', KEYS[7], 'MAXLEN', '~', ARGV[6], '*',
    'cut', id, 'msg', ARGV[1], 'models', ARGV[8], 'ts', ARGV[5], 'reason', ARGV[4])
end
return res
"""
)


# What ``decide`` needs, in one command (one reply to parse, not five).
# KEYS: meta, members, streak, turns, round_due. ARGV: "1" when the text @mentions someone (the
# member names are needed only then: a large room's member list is not read with every post).
_STATE_LUA = """
local members = {}
if ARGV[1] == '1' then members = redis.call('HKEYS', KEYS[2]) end
return {redis.call('GET', KEYS[1]) or '', members, redis.call('GET', KEYS[3]) or '',
        redis.call('GET', KEYS[4]) or '', redis.call('EXISTS', KEYS[5])}
"""


@dataclass(frozen=True)
class Fence:
    """Post only while ``holder`` still holds the lease at ``key`` in ``term``."""

    key: str
    holder: str
    term: int


class FencedError(RuntimeError):
    """A leader's write was refused: the lease has a new holder or term."""


@dataclass(frozen=True)
class PostResult:
    append: AppendResult
    route: Route
    notice: Entry | None = None


class Router:
    """Stores messages and enqueues the models' jobs, atomically."""

    def __init__(self, redis: aioredis.Redis, timeline: Timeline, max_model_streak: int = 3):
        self._timeline = timeline
        # A post's reads and its script go through the client's batcher: concurrent posts share
        # round trips (see llmchat/batching.py).
        self._redis = redis
        self._cluster = is_cluster(redis)
        self._durability = Durability.from_env(self._cluster)
        self._batch = batcher_for(redis)
        self._post = self._batch.script(_POST_LUA)
        self._node_scripts: dict[int, BatchScript] = {}
        self._state = self._batch.script(_STATE_LUA)
        self.max_model_streak = max_model_streak
        # the room's document is read with every post (in the same round trip as its state)
        self._rooms = ParsedRooms()

    async def post(self, room_name: str, entry: NewEntry, fence: Fence | None = None) -> PostResult:
        """Store ``entry`` and enqueue the jobs it calls for (one round trip to read the room)."""
        room, route = await self._route(room_name, entry)
        if route.targets:
            entry.meta = {**entry.meta, "route": {"to": route.targets, "reason": route.reason}}
        stream_id, duplicate = await self._store(room_name, entry, route, fence)
        result = await self._timeline.appended(room_name, entry, stream_id, duplicate)
        if duplicate:
            return PostResult(result, Route([], "duplicate"))
        return PostResult(result, route, await self._notices(room, entry, route))

    async def _route(self, room_name: str, entry: NewEntry) -> tuple[Room, Route]:
        """The room and where ``entry`` goes, from the room's state read in one command."""
        (state,) = await self._batch.execute(
            [
                self._state.command(
                    [
                        keys.room_meta(room_name),
                        keys.members(room_name),
                        keys.model_streak(room_name),
                        keys.turns(room_name),
                        keys.round_due(room_name),
                    ],
                    ["1" if mentions(entry.text) else "0"],
                )
            ]
        )
        meta, member_keys, streak_raw, turns_raw, due = cast(list[Any], state)
        if not meta:
            raise RoomNotFoundError(room_name)
        room = self._rooms.parse(room_name, meta)
        route = decide(
            room,
            kind=entry.kind,
            author=entry.author,
            text=entry.text,
            members=set(cast(list[str], member_keys)),
            streak=int(streak_raw or 0),
            max_model_streak=self.max_model_streak,
            turn=int(turns_raw or 0) + 1,
            round_due=bool(due),
        )
        return room, route

    async def _store(
        self, room_name: str, entry: NewEntry, route: Route, fence: Fence | None
    ) -> tuple[str, bool]:
        """Append ``entry`` with its jobs and round (``_POST_LUA``): (stream id, duplicate)."""
        mode = {EntryKind.HUMAN: "reset", EntryKind.MODEL: "incr"}.get(entry.kind, "keep")
        round_models = [t for t in route.targets if t != LEADER_QUEUE]
        if (
            fence is not None
            and self._cluster
            and not same_slot(fence.key, keys.timeline(room_name))
        ):
            # A fence of another slot (a judge's lease serving many rooms) cannot be read by
            # the room's script on a cluster: it is checked one round trip before the store.
            await self._check_fence(fence)
            fence = None
        command = self._post.command(
            [
                keys.room_meta(room_name),
                keys.timeline(room_name),
                keys.message_ids(room_name),
                keys.model_streak(room_name),
                keys.turns(room_name),
                keys.round_due(room_name),
                keys.rounds(room_name),
                fence.key if fence else keys.room_lease(room_name),
                *(keys.jobs(room_name, m) for m in route.targets),
            ],
            [
                entry.msg_id,
                encode_entry(entry),
                mode,
                route.reason,
                f"{time.time():.6f}",
                QUEUE_MAXLEN,
                "1" if route.is_round else "0",
                json.dumps(round_models),
                fence.holder if fence else "",
                str(fence.term) if fence else "",
                now_ms(),
                *route.targets,
            ],
        )
        try:
            if self._durability.replicas > 0:
                res = await self._store_durably(room_name, entry.msg_id, command)
            else:
                (res,) = await self._batch.execute([command])
        except aioredis.ResponseError as exc:
            raise_append_error(exc, room_name, entry.msg_id)
            if str(exc).startswith("FENCED"):
                raise FencedError(str(exc)) from exc
            raise
        return str(res[0]), bool(int(res[1]))

    async def _check_fence(self, fence: Fence) -> None:
        holder, term, renewed, duration = await self._redis.hmget(
            fence.key, ["holder", "term", "renewed", "duration"]
        )
        live = renewed is not None and now_ms() < int(renewed) + int(duration or 0)
        if holder != fence.holder or term != str(fence.term) or not live:
            raise FencedError("FENCED the leadership lease has moved on")

    async def _store_durably(self, room_name: str, msg_id: str, command: tuple[Any, ...]) -> Any:
        """The post and a ``WAIT`` in one pipeline on the room's master (one connection, so
        the ``WAIT`` counts this write); raises ``NotReplicatedError`` when no replica confirms
        in time. A MOVED or ASK reply (the slot has a new master) is retried once there: the
        script did not run where it was refused."""
        for attempt in range(2):
            client = await master_client(self._redis, keys.timeline(room_name))
            batch = batcher_for(client)
            self._node_script(batch)
            try:
                res, confirmed = await batch.execute([command, self._durability.wait_command()])
            except (MovedError, AskError) as exc:
                await refresh_topology(self._redis)
                if attempt == 0:
                    continue
                raise RedisConnectionError(f"room {room_name!r} is moving: {exc}") from exc
            except UNAVAILABLE_ERRORS:
                await refresh_topology(self._redis)
                raise
            self._durability.check(confirmed, f"message {msg_id!r}")
            return res
        raise AssertionError("unreachable")  # pragma: no cover

    def _node_script(self, batch: CommandBatcher) -> BatchScript:
        """The post script known to ``batch`` (so it loads it again after a NOSCRIPT)."""
        return self._node_scripts.get(id(batch)) or self._node_scripts.setdefault(
            id(batch), batch.script(_POST_LUA)
        )

    async def _notices(self, room: Room, entry: NewEntry, route: Route) -> Entry | None:
        """A system entry in the room for @names nobody has, or for a capped model chain."""
        lines = []
        if route.unknown:
            names = ", ".join(f"@{n}" for n in route.unknown)
            models = ", ".join(f"@{m}" for m in room.model_names()) or "none"
            lines.append(f"Nobody called {names} is in this room. Models here: {models}.")
        if route.capped:
            lines.append(
                f"{entry.author} asked another model, but the room allows at most "
                f"{self.max_model_streak} model replies in a row; a person has to speak first."
            )
        if not lines:
            return None
        notice = NewEntry(
            msg_id=server_msg_id("notice", *entry.msg_id.split("/")),
            kind=EntryKind.SYSTEM,
            author="system",
            text=" ".join(lines),
            meta={"about": entry.msg_id},
        )
        return (await self._timeline.append(room.name, notice)).entry
