"""A worker whose job loop is stuck gives up leadership, and takes part again once it moves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from model_worker.jobs import Job
from model_worker.main import probes
from model_worker.settings import WorkerSettings
from model_worker.watchdog import LoopWatchdog, awaiting
from model_worker.worker import Worker
from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from llmchat.health_server import health_app
from llmchat.models import EntryKind, NewEntry, RoomCreate
from llmchat.rooms import RoomStore
from llmchat.router import Router
from llmchat.timeline import Timeline
from tests.model_worker.test_affinity import SlowBackend
from tests.support.procs import RedisServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_bound_counts_from_the_last_beat_plus_its_allowance() -> None:
    clock = FakeClock()
    dog = LoopWatchdog("ada", stall_after_s=5.0, clock=clock)
    clock.now += 600  # not watching before the loop's first beat (the model may be loading)
    assert dog.overdue_s() == 0
    dog.beat()
    clock.now += 4.9
    assert dog.overdue_s() == 0 and not dog.check()
    clock.now += 0.2
    assert dog.overdue_s() > 0 and dog.check() and dog.stalled
    dog.beat(allowance_s=60.0)  # a generation started: it may take its own time limit
    clock.now += 64.0
    assert not dog.check()
    clock.now += 2.0
    assert dog.check()
    dog.beat()
    assert not dog.check() and not dog.stalled


async def test_awaiting_names_where_a_task_is_stuck() -> None:
    gate = asyncio.Event()

    async def inner() -> None:
        await gate.wait()

    async def outer() -> None:
        await inner()

    task = asyncio.create_task(outer())
    await asyncio.sleep(0.01)
    where = awaiting(task)
    assert [w.split(" ")[0] for w in where[:3]] == ["outer", "inner", "wait"], where
    gate.set()
    await task
    assert awaiting(task) == []


def _stalled_metric(model: str) -> float | None:
    return REGISTRY.get_sample_value("llmchat_worker_stalled", {"model": model})


def _leader(workers: dict[str, Worker], room: str) -> str | None:
    leading = [name for name, w in workers.items() if w.electors[room].leading]
    return leading[0] if len(leading) == 1 else None


async def _until(pred: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await pred():
            return time.monotonic() - start
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not within {timeout} s")


async def test_a_stuck_leader_hands_over_and_comes_back(redis_server: RedisServer) -> None:
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    room = "stuck"
    await RoomStore(redis).create(
        RoomCreate.model_validate(
            {"name": room, "mode": "leader", "models": [{"name": "ada"}, {"name": "bob"}]}
        )
    )
    stop = asyncio.Event()
    workers: dict[str, Worker] = {}
    for name in ("ada", "bob"):
        settings = WorkerSettings(
            redis_url=redis_server.url,
            model_name=name,
            rooms=[room],
            consumer=f"{name}-1",
            stall_after_s=1.5,
            min_tenure_s=0,
        )
        workers[name] = Worker(settings, redis, SlowBackend(0.05))
    tasks = [asyncio.create_task(w.run(stop)) for w in workers.values()]
    timeline = Timeline(redis)
    router = Router(redis, timeline)
    try:
        await _until(lambda: _true(_leader(workers, room) is not None), 10, "a first leader")
        first = _leader(workers, room)
        assert first is not None
        other = "bob" if first == "ada" else "ada"
        stuck = workers[first]

        # the leader's job loop gets stuck on its next pass (as a lost cancellation left it)
        gate = asyncio.Event()
        real_next_jobs = stuck._next_jobs

        async def stuck_next_jobs() -> list[Job]:
            await gate.wait()
            return []

        stuck._next_jobs = stuck_next_jobs  # type: ignore[method-assign]
        took = await _until(
            lambda: _leads(workers, room, other), 10, f"{other} taking over from stuck {first}"
        )
        assert took < 1.5 + 5, took
        await _until(lambda: _true(stuck.watchdog.stalled), 3, "the stall being reported")
        assert not stuck.serving()
        assert _stalled_metric(first) == 1
        assert _stalled_metric(other) == 0

        # the room is served meanwhile, by the new leader
        await router.post(room, NewEntry(kind=EntryKind.HUMAN, author="al", text="anyone?"))

        async def answered_by_other() -> bool:
            entries = await timeline.read_after(room, "0-0", 100)
            return any(
                e.kind == EntryKind.MODEL and e.author == other and e.meta.get("as_leader")
                for e in entries
            )

        await _until(answered_by_other, 10, f"an answer from the new leader {other}")

        # the loop moves again: it counts as serving and takes part in elections again
        stuck._next_jobs = real_next_jobs  # type: ignore[method-assign]
        gate.set()
        await _until(lambda: _true(not stuck.watchdog.stalled), 3, "the stall clearing")
        assert stuck.serving()
        assert _stalled_metric(first) == 0
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
        await redis.aclose()


async def _true(value: bool) -> bool:
    return value


async def _leads(workers: dict[str, Worker], room: str, name: str) -> bool:
    return workers[name].electors[room].leading and not any(
        w.electors[room].leading for n, w in workers.items() if n != name
    )


def test_probes_say_not_ready_at_the_bound_and_not_alive_at_twice_it() -> None:
    settings = WorkerSettings(model_name="ada", rooms=["r"], stall_after_s=10, elections=False)
    redis = aioredis.Redis.from_url("redis://127.0.0.1:1/0")  # never contacted
    worker = Worker(settings, redis, SlowBackend(0))
    clock = FakeClock()
    worker.watchdog = LoopWatchdog("ada", settings.stall_after_s, clock=clock)
    worker.watchdog.beat()
    client = TestClient(health_app("model-worker", *probes(worker)))

    def status() -> tuple[int, int]:
        return client.get("/readyz").status_code, client.get("/healthz").status_code

    assert status() == (200, 200)
    clock.now += 10.5  # past the bound: out of elections and not ready, still alive
    assert status() == (503, 200)
    assert client.get("/readyz").json()["stalled_s"] == 0.5
    clock.now += 10.0  # twice the bound: a liveness probe restarts it
    assert status() == (503, 503)
    assert client.get("/healthz").json()["status"] == "stuck"
    worker.watchdog.beat()  # it moved after all
    assert status() == (200, 200)
