"""One consumer of the queue over several rooms' streams, on one Redis and on a real Redis
Cluster, where those streams lie on different slots (a single XREADGROUP over them is refused
there with CROSSSLOT)."""

from __future__ import annotations

import time
from functools import partial

from redis.crc import key_slot

from llmchat import keys
from llmchat.queue import ConsumerGroup
from llmchat.redis_conn import create_redis, is_cluster
from llmchat.wire import Job, parse_job
from tests.conftest import BOTH_REDIS, ClusterTarget
from tests.support.procs import RedisServer

ROOMS = ["north", "south", "east", "west"]


@BOTH_REDIS
async def test_one_consumer_reads_jobs_of_rooms_on_many_slots(
    redis_server: RedisServer | ClusterTarget,
) -> None:
    r = create_redis(redis_server.url)
    try:
        streams = {keys.jobs(room, "ada"): partial(parse_job, room, "ada") for room in ROOMS}
        if isinstance(redis_server, ClusterTarget):
            assert is_cluster(r)
            assert len({key_slot(k.encode()) for k in streams}) == len(ROOMS)
        group: ConsumerGroup[Job] = ConsumerGroup(r, "workers", "w-1")
        for key in streams:
            await group.ensure_group(key)
        started = time.monotonic()
        assert await group.read(streams, count=10, block_ms=200) == []
        assert time.monotonic() - started >= 0.04  # an empty read waited, it did not spin
        for i, room in enumerate(ROOMS):
            fields = {"cut": f"1-{i}", "msg": f"m{i}", "reason": "all", "ts": "1", "model": "ada"}
            await r.xadd(keys.jobs(room, "ada"), fields)  # type: ignore[arg-type]
        got: list[Job] = []
        deadline = time.monotonic() + 10
        while len(got) < len(ROOMS) and time.monotonic() < deadline:
            got += await group.read(streams, count=10, block_ms=200)
        assert sorted(j.room for j in got) == sorted(ROOMS)
        assert {j.msg for j in got} == {f"m{i}" for i in range(len(ROOMS))}
    finally:
        await r.aclose()
