"""The job and round wire format: what the router's post script writes is what ``llmchat.wire``
describes and parses; entries that do not parse are logged and acknowledged by the queue, never
a crash. Against a real redis-server."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from llmchat import keys
from llmchat.models import NewEntry, RoomCreate, RoomMode, RoomModel
from llmchat.queue import ConsumerGroup
from llmchat.rooms import RoomStore
from llmchat.router import Router
from llmchat.timeline import Timeline
from llmchat.wire import (
    JOB_FIELDS,
    ROUND_FIELDS,
    Job,
    Round,
    WireFormatError,
    parse_job,
    parse_round,
)
from tests.support.procs import RedisServer


async def _room(r: aioredis.Redis) -> Router:
    store = RoomStore(r)
    room = await store.create(
        RoomCreate(
            name="lobby", mode=RoomMode.ALL, models=[RoomModel(name="ada"), RoomModel(name="bob")]
        )
    )
    await store.join(room, "alice")
    return Router(r, Timeline(r))


async def test_what_the_router_writes_is_what_the_wire_module_describes_and_parses(
    redis_server: RedisServer,
) -> None:
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    router = await _room(r)
    res = await router.post("lobby", NewEntry(msg_id="h1", author="alice", text="hi"))
    cut = res.append.entry.id
    rows: Any = await r.xrange(keys.jobs("lobby", "ada"))
    (job_id, fields) = rows[0]
    assert tuple(fields) == JOB_FIELDS
    job = parse_job("lobby", "ada", job_id, fields)
    assert (job.cut, job.msg, job.reason, job.queue) == (cut, "h1", "all", "ada")
    assert job.enqueued_at > 0
    rounds: Any = await r.xrange(keys.rounds("lobby"))
    (round_id, round_fields) = rounds[0]
    assert tuple(round_fields) == ROUND_FIELDS
    rnd = parse_round("lobby", round_id, round_fields)
    assert (rnd.cut, rnd.models) == (cut, ["ada", "bob"])
    await r.aclose()


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "no cut"),
        ({"cut": "yesterday"}, "not a stream id"),
        ({"cut": "1-0", "ts": "soon"}, "not a number"),
        ({"cut": "1-0", "ts": "nan"}, "not a finite number"),
    ],
)
def test_a_bad_job_names_its_problem(fields: dict[str, str], problem: str) -> None:
    with pytest.raises(WireFormatError, match=problem):
        parse_job("lobby", "ada", "1-0", fields)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"models": "[]"}, "no cut"),
        ({"cut": "1-0", "models": "[ada"}, "not JSON"),
        ({"cut": "1-0", "models": '{"ada": 1}'}, "not a list"),
    ],
)
def test_a_bad_round_names_its_problem(fields: dict[str, str], problem: str) -> None:
    with pytest.raises(WireFormatError, match=problem):
        parse_round("lobby", "1-0", fields)


async def test_bad_entries_are_acknowledged_and_kept_good_ones_are_read(
    redis_server: RedisServer,
) -> None:
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    key = keys.rounds("lobby")
    group: ConsumerGroup[Round] = ConsumerGroup(r, "judges", "j1")
    await group.ensure_group(key)
    await group.ensure_group(key)  # already there: fine
    await r.xadd(key, {"cut": "garbage", "models": "[]"}, id="1-0")
    await r.xadd(key, {"cut": "1-0", "models": '["ada","bob"]', "ts": "1"}, id="2-0")
    got = await group.read({key: lambda i, f: parse_round("lobby", i, f)}, count=10, block_ms=None)
    assert [(g.job_id, g.models) for g in got] == [("2-0", ["ada", "bob"])]
    pending: Any = await r.xpending(key, "judges")
    assert pending["pending"] == 1  # the bad one was acknowledged, the good one waits
    assert await r.xlen(key) == 2  # and nothing was deleted
    jobs: ConsumerGroup[Job] = ConsumerGroup(r, "workers", "w1")
    jkey = keys.jobs("lobby", "ada")
    await jobs.ensure_group(jkey)
    await r.xadd(jkey, {"cut": ""}, id="1-0")
    claimed = await jobs.claim_stale(jkey, lambda i, f: parse_job("lobby", "ada", i, f), 0)
    assert claimed == []
    fresh = await jobs.read({jkey: lambda i, f: parse_job("lobby", "ada", i, f)}, 10, None)
    assert fresh == []
    assert (await r.xpending(jkey, "workers"))["pending"] == 0
    await r.aclose()
