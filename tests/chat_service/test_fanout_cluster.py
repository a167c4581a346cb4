"""The replica's fan-out on a real Redis Cluster: reads follow posts, not rooms. A room is read
when its new entry is announced (sharded pub/sub), and every followed room only once per
safety pass, so idle rooms cost next to nothing."""

from __future__ import annotations

import asyncio

import pytest
from chat_service import broker_cluster
from chat_service.fanout import Fanout
from chat_service.hub import Subscriber
from chat_service.protocol import WireEntry
from llmchat_tools.redis_cluster import RedisCluster

from llmchat.models import NewEntry, RoomCreate
from llmchat.redis_conn import create_redis
from llmchat.rooms import RoomStore
from llmchat.timeline import Timeline

ROOMS = [f"quiet{i}" for i in range(30)]


async def _next_wire(sub: Subscriber, timeout: float) -> WireEntry:
    while True:
        kind, payload = await asyncio.wait_for(sub.queue.get(), timeout)
        if kind == "wire":
            assert isinstance(payload, WireEntry)
            return payload


async def test_idle_rooms_are_not_polled_and_a_post_wakes_its_room(
    redis_cluster: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no safety pass within the test: whatever arrives was woken by its announcement
    monkeypatch.setattr(broker_cluster, "SAFETY_POLL_S", 600.0)
    redis_cluster.wait_ok()
    redis_cluster.flushall()
    r = create_redis(redis_cluster.url)
    store = RoomStore(r)
    for name in ROOMS:
        await store.create(RoomCreate(name=name))
    tl = Timeline(r)
    hub = Fanout(redis_cluster.url, tl, queue_limit=100)
    try:
        subs = {name: await hub.subscribe(name) for name in ROOMS}
        await asyncio.sleep(0.5)  # the first passes (every room, once) are done
        reads_before = hub.reads
        await asyncio.sleep(2.0)
        idle_reads = hub.reads - reads_before
        # before: a pass per master every 10 ms, ~600 in 2 s
        assert idle_reads == 0, f"{idle_reads} timeline reads while nobody posted"
        for name in ROOMS[:5]:
            stored = (await tl.append(name, NewEntry(author="x", text=f"hello {name}"))).entry
            got = await _next_wire(subs[name], timeout=30)
            assert got.id == stored.id and f"hello {name}" in got.text
        assert all(subs[n].queue.empty() for n in ROOMS[5:])
        assert hub.reads - reads_before <= 10  # one read (or two) per post, not per room
    finally:
        await hub.close()
        await r.aclose()
