"""Auto-pipelining: concurrent callers share round trips and each gets its own replies."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.connection import HiredisRespSerializer
from redis.exceptions import ResponseError

from llmchat.batching import CommandBatcher, batcher_for
from llmchat.models import NewEntry, RoomCreate, RoomMode
from llmchat.redis_conn import UNAVAILABLE_ERRORS, create_redis
from llmchat.rooms import RoomStore
from llmchat.router import Router
from llmchat.timeline import Timeline
from tests.support.procs import RedisServer

INCR_BY_LUA = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


async def test_concurrent_callers_share_pipelines_and_get_their_own_replies(
    redis_server: RedisServer,
) -> None:
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    batcher = CommandBatcher(r)
    await r.mset({f"k{i}": f"v{i}" for i in range(200)})

    async def one(i: int) -> list[object]:
        return await batcher.execute([("GET", f"k{i}"), ("INCR", f"n{i % 7}"), ("EXISTS", "nope")])

    replies = await asyncio.gather(*(one(i) for i in range(200)))
    assert [rep[0] for rep in replies] == [f"v{i}" for i in range(200)]
    assert all(rep[2] == 0 for rep in replies)
    counts = [int(c or 0) for c in await r.mget([f"n{j}" for j in range(7)])]
    assert sum(counts) == 200
    assert batcher.requests == 200
    assert batcher.pipelines < 20, f"{batcher.pipelines} round trips for 200 concurrent callers"
    await r.aclose()


async def test_an_error_reply_reaches_only_its_caller(redis_server: RedisServer) -> None:
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    batcher = CommandBatcher(r)
    await r.set("text", "not a number")
    good = asyncio.ensure_future(batcher.execute([("SET", "a", "1"), ("GET", "a")]))
    bad = asyncio.ensure_future(batcher.execute([("INCR", "text")]))
    assert await good == [True, "1"]
    with pytest.raises(ResponseError, match="not an integer"):
        await bad
    assert await r.get("text") == "not a number"
    await r.aclose()


async def test_scripts_are_loaded_again_after_redis_forgets_them(
    redis_server: RedisServer,
) -> None:
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    batcher = CommandBatcher(r)
    script = batcher.script(INCR_BY_LUA)
    assert await batcher.execute([script.command(["c"], [5])]) == [5]
    await r.script_flush()
    assert await batcher.execute([script.command(["c"], [2])]) == [7]
    await r.aclose()


async def test_callers_hear_an_outage_and_the_batcher_recovers(
    redis_server: RedisServer,
) -> None:
    r = create_redis(redis_server.url)
    batcher = batcher_for(r)
    assert batcher_for(r) is batcher
    await r.set("x", "1")
    redis_server.stop()
    with pytest.raises(UNAVAILABLE_ERRORS):
        await batcher.execute([("GET", "x")])
    redis_server.start()
    for _ in range(50):
        try:
            assert await batcher.execute([("GET", "x")]) == ["1"]
            break
        except UNAVAILABLE_ERRORS:
            await asyncio.sleep(0.1)
    else:
        pytest.fail("the batcher did not recover after Redis came back")
    await r.aclose()


async def test_concurrent_posts_keep_one_entry_per_message_id(redis_server: RedisServer) -> None:
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    store = RoomStore(r)
    room = await store.create(RoomCreate(name="lobby", mode=RoomMode.ALL))
    await store.join(room, "alice")
    router = Router(r, Timeline(r))
    posts = [NewEntry(msg_id=f"m{i % 50}", author="alice", text=f"hi {i % 50}") for i in range(150)]
    results = await asyncio.gather(*(router.post("lobby", p) for p in posts))
    ids = {res.append.entry.msg_id: res.append.entry.id for res in results}
    assert len(ids) == 50
    assert sum(not res.append.duplicate for res in results) == 50
    for res in results:  # every repeat got the id of the stored entry
        assert res.append.entry.id == ids[res.append.entry.msg_id]
    assert await Timeline(r).length("lobby") == 50
    await r.aclose()


def test_commands_are_packed_by_hiredis() -> None:
    """redis-py (>= 8.2) packs asyncio commands with hiredis: a fan-out hot path (the many-key
    XREAD of the room feeds). Guards against a lock that moves to a build without it."""
    client = create_redis("redis://127.0.0.1:1/0")
    pool = client.connection_pool
    conn = pool.connection_class(**pool.connection_kwargs)
    assert isinstance(conn._command_packer, HiredisRespSerializer)
    assert b"".join(conn.pack_command("XREAD", "COUNT", 5, "STREAMS", "a", "0-0")) == (
        b"*6\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n$1\r\n5\r\n$7\r\nSTREAMS\r\n$1\r\na\r\n$3\r\n0-0\r\n"
    )
