"""The judge's queue: each room's ``rounds`` stream, read by consumer group ``judges``.

Only the lease holder reads it; a judge that takes the lease over first claims every round the
old holder left pending (``take_over``). What a round holds is ``llmchat.wire``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import redis.asyncio as aioredis

from llmchat import keys
from llmchat.ids import server_id_kind
from llmchat.models import Entry, EntryKind
from llmchat.queue import ConsumerGroup, Parser
from llmchat.timeline import Timeline
from llmchat.wire import Round, parse_round

GROUP = "judges"
#: Rounds read at once, and claimed at once when taking over.
READ_COUNT = 10
CLAIM_COUNT = 100
#: How long a read waits for a new round.
BLOCK_MS = 250


def _parser(room: str) -> Parser[Round]:
    return lambda job_id, fields: parse_round(room, job_id, fields)


class RoundQueue:
    """The rounds of ``rooms``, for one consumer (one judge replica)."""

    def __init__(self, redis: aioredis.Redis, rooms: list[str], consumer: str) -> None:
        self.rooms = rooms
        self._group: ConsumerGroup[Round] = ConsumerGroup(redis, GROUP, consumer)

    async def ensure_groups(self) -> None:
        for room in self.rooms:
            with contextlib.suppress(aioredis.ResponseError):  # BUSYGROUP: already there
                await self._group.ensure_group(keys.rounds(room))

    async def take_over(self) -> list[Round]:
        """Every round pending in the group, whoever read it (a previous judge)."""
        out: list[Round] = []
        for room in self.rooms:
            out.extend(
                await self._group.claim_stale(keys.rounds(room), _parser(room), 0, CLAIM_COUNT)
            )
        return out

    async def read(self) -> list[Round]:
        """New rounds (waiting up to ``BLOCK_MS`` for one)."""
        parsers = {keys.rounds(r): _parser(r) for r in self.rooms}
        return await self._group.read(parsers, READ_COUNT, BLOCK_MS)

    async def ack(self, rnd: Round) -> None:
        await self._group.ack(keys.rounds(rnd.room), [rnd.job_id])


async def wait_for_answers(timeline: Timeline, rnd: Round, deadline_s: float) -> dict[str, Entry]:
    """The round's answers, once every model of the round answered or gave up, or the deadline
    (``deadline_s`` after the round was enqueued) passed."""
    deadline = rnd.enqueued_at + deadline_s
    answers: dict[str, Entry] = {}
    while True:
        done: set[str] = set()
        cursor = rnd.cut
        while True:
            page = await timeline.read_after(rnd.room, cursor, 500)
            for e in page:
                if e.meta.get("cut") == rnd.cut and e.author in rnd.models:
                    answers[e.author] = e
                if (
                    e.kind == EntryKind.SYSTEM
                    # "err." is how workers named these before ids had their namespace
                    and (server_id_kind(e.msg_id) == "err" or e.msg_id.startswith("err."))
                    and e.meta.get("cut") == rnd.cut
                ):
                    done.add(str(e.meta.get("model")))
            if len(page) < 500:
                break
            cursor = page[-1].id
        if set(rnd.models) <= set(answers) | done or time.time() >= deadline:
            return answers
        await asyncio.sleep(0.3)
