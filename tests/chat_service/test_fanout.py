"""The replica's fan-out: one multiplexed timeline read for every room, against real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from chat_service.fanout import Fanout
from chat_service.hub import Hub, Subscriber
from chat_service.protocol import WireEntry

from llmchat import keys
from llmchat.models import NewEntry, RoomCreate
from llmchat.rooms import RoomStore
from llmchat.timeline import Timeline
from tests.support.procs import RedisServer


@contextlib.asynccontextmanager
async def _hub(
    redis_server: RedisServer, rooms: list[str], queue_limit: int
) -> AsyncIterator[tuple[aioredis.Redis, Timeline, Fanout]]:
    """A Redis client, the rooms, a timeline and a fan-out, all closed afterwards."""
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    store = RoomStore(r)
    for name in rooms:
        await store.create(RoomCreate(name=name))
    tl = Timeline(r)
    hub = Fanout(redis_server.url, tl, queue_limit=queue_limit)
    try:
        yield r, tl, hub
    finally:
        await hub.close()
        await r.aclose()


async def _next_wire(sub: Subscriber, timeout: float = 3.0) -> WireEntry:
    while True:
        kind, payload = await asyncio.wait_for(sub.queue.get(), timeout)
        if kind == "wire":
            assert isinstance(payload, WireEntry)
            return payload


async def test_a_room_added_while_the_read_blocks_is_followed_at_once(
    redis_server: RedisServer,
) -> None:
    async with _hub(redis_server, ["a", "b"], queue_limit=100) as (_, tl, hub):
        sub_a = await hub.subscribe("a")
        await asyncio.sleep(0.3)  # the reader is now blocked on room a alone (5 s block)
        sub_b = await hub.subscribe("b")
        started = time.monotonic()
        stored = (await tl.append("b", NewEntry(author="x", text="hello b"))).entry
        got = await _next_wire(sub_b, timeout=2.0)
        took = time.monotonic() - started
        assert got.id == stored.id and '"hello b"' in got.text
        assert took < 1.0, f"room b's first entry took {took:.2f} s: the blocked read was not woken"
        assert sub_a.queue.empty()


async def test_a_burst_across_many_rooms_is_read_in_few_round_trips(
    redis_server: RedisServer,
) -> None:
    names = [f"room{i}" for i in range(100)]
    async with _hub(redis_server, names, queue_limit=100) as (r, _, hub):
        subs = {name: await hub.subscribe(name) for name in names}
        await asyncio.sleep(0.3)
        reads_before = hub.reads
        pipe = r.pipeline(transaction=True)  # one burst: every room gets 3 entries at once
        for name in names:
            for k in range(3):
                entry = NewEntry(msg_id=f"{name}-{k}", author="x", text=f"{name} #{k}")
                pipe.xadd(keys.timeline(name), {"m": entry.msg_id, "d": entry.model_dump_json()})
        ids = await pipe.execute()
        for i, name in enumerate(names):
            got = [(await _next_wire(subs[name])).id for _ in range(3)]
            assert got == ids[3 * i : 3 * i + 3]
        reads = hub.reads - reads_before
        assert reads < 100, f"{reads} timeline reads for 100 rooms: the read is not multiplexed"
        assert hub.stats() == {"rooms": 100, "subscribers": 100}


async def test_leaving_and_rejoining_a_room_neither_repeats_nor_loses_entries(
    redis_server: RedisServer,
) -> None:
    async with _hub(redis_server, ["c", "keep"], queue_limit=1000) as (_, tl, hub):
        await hub.subscribe("keep")  # keeps the reader busy with another room
        first = await hub.subscribe("c")
        before = (await tl.append("c", NewEntry(author="x", text="one"))).entry
        assert (await _next_wire(first)).id == before.id
        await hub.unsubscribe(first)
        await tl.append("c", NewEntry(author="x", text="while nobody listens"))
        again = await hub.subscribe("c")
        after = [
            (await tl.append("c", NewEntry(author="x", text=f"n{i}"))).entry for i in range(20)
        ]
        got = [(await _next_wire(again)).id for _ in range(20)]
        assert got == [e.id for e in after]  # only what came after the new subscription
        await asyncio.sleep(0.2)
        assert again.queue.empty()


def test_the_hub_is_a_registry_of_subscribers_by_room() -> None:
    hub = Hub(queue_limit=10)
    a1, a2, b = hub.add("a"), hub.add("a"), hub.add("b")
    assert hub.listened("a") and hub.listened("b") and not hub.listened("c")
    hub.broadcast("a", ("live", "{}"))
    hub.broadcast("c", ("live", "{}"))  # nobody listens: nothing happens
    assert (a1.queue.qsize(), a2.queue.qsize(), b.queue.qsize()) == (1, 1, 0)
    assert hub.stats() == {"rooms": 2, "subscribers": 3}
    assert hub.remove(a1) is False  # a2 still listens
    assert hub.remove(a2) is True and not hub.listened("a")
    assert hub.remove(a2) is False  # already gone
    assert hub.rooms == ["b"]
