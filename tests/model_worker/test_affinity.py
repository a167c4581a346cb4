"""Room affinity with bounded load, and prefix-stable prompt trimming (no model needed)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from model_worker.main import backend_options
from model_worker.prompt import build_prompt, flatten
from model_worker.settings import WorkerSettings
from model_worker.worker import Worker

from llmchat.llm.backends.base import Backend, ChatMessage, Generation, estimate_tokens
from llmchat.models import Entry, EntryKind, NewEntry, RoomCreate
from llmchat.rooms import RoomStore
from llmchat.router import Router
from llmchat.timeline import Timeline
from tests.support.procs import RedisServer


class SlowBackend(Backend):
    """Answers after ``delay`` seconds, a few deltas."""

    name = "fake"

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def stream_chat(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None = None,
        timeout_s: float,
        stop: list[str] | None = None,
        info: Generation | None = None,
    ) -> AsyncIterator[str]:
        await asyncio.sleep(self.delay)
        for word in ("fine", " thanks"):
            yield word

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def health(self) -> bool:
        return True

    async def close(self) -> None:
        return None


async def _answers(timeline: Timeline, room: str, n: int, timeout: float = 20) -> list[Entry]:
    async with asyncio.timeout(timeout):
        while True:
            got = [e for e in await timeline.read_after(room, "0-0", 1000) if e.kind == "model"]
            if len(got) >= n:
                return got
            await asyncio.sleep(0.05)


async def test_turns_stay_with_the_idle_replica_and_spill_over_when_it_is_busy(
    redis_server: RedisServer,
) -> None:
    redis = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    room = "aff"
    await RoomStore(redis).create(
        RoomCreate.model_validate({"name": room, "mode": "all", "models": [{"name": "ada"}]})
    )
    stop = asyncio.Event()
    workers = []
    for consumer in ("ada-1", "ada-2"):
        settings = WorkerSettings(
            redis_url=redis_server.url,
            model_name="ada",
            rooms=[room],
            consumer=consumer,
            elections=False,
            affinity_wait_ms=2000,
        )
        workers.append(Worker(settings, redis, SlowBackend(0.3)))
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    timeline = Timeline(redis)
    router = Router(redis, timeline)
    try:
        await asyncio.sleep(0.5)
        # one turn at a time, each posted as soon as the previous answer is stored: every turn
        # goes to the replica that answered the first
        for i in range(5):
            await router.post(room, NewEntry(kind=EntryKind.HUMAN, author="al", text=f"q{i}"))
            await _answers(timeline, room, i + 1)
        owners = {e.meta["worker"] for e in await _answers(timeline, room, 5)}
        assert len(owners) == 1, owners
        # a burst while the owner is busy: the other replica takes some (bounded load)
        for i in range(4):
            await router.post(room, NewEntry(kind=EntryKind.HUMAN, author=f"p{i}", text="hi"))
            await asyncio.sleep(0.05)
        answers = await _answers(timeline, room, 6, timeout=30)
        await asyncio.sleep(1.5)
        answers = [e for e in await timeline.read_after(room, "0-0", 1000) if e.kind == "model"]
        assert {e.meta["worker"] for e in answers[5:]} == {"ada-1", "ada-2"}
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
        await redis.aclose()


def _entry(i: int, text: str) -> Entry:
    kind = EntryKind.MODEL if i % 2 else EntryKind.HUMAN
    author = "ada" if i % 2 else "alice"
    return Entry(id=f"{1000 + i}-0", room="r", msg_id=f"m{i}", kind=kind, author=author, text=text)


def test_trimmed_transcript_start_moves_in_chunks_not_every_turn() -> None:
    history = [_entry(i, f"message {i} " + "words " * 12) for i in range(120)]
    starts = []
    for turn in range(40, 121):
        msgs = build_prompt(
            name="ada",
            room="r",
            system_prompt="",
            entries=history[:turn],
            budget_tokens=600,
            count_tokens=estimate_tokens,
        )
        lines = flatten(msgs, "ada")
        assert lines[-1].endswith(history[turn - 1].text.strip())
        assert sum(estimate_tokens(line) for line in lines) <= 600
        starts.append(lines[0])
    changes = sum(1 for a, b in itertools.pairwise(starts) if a != b)
    assert changes <= len(starts) // 3, changes  # exact trimming would move it every turn
    exact = [
        flatten(
            build_prompt(
                name="ada",
                room="r",
                system_prompt="",
                entries=history[:turn],
                budget_tokens=600,
                count_tokens=estimate_tokens,
                stable_prefix=False,
            ),
            "ada",
        )[0]
        for turn in range(40, 121)
    ]
    assert sum(1 for a, b in itertools.pairwise(exact) if a != b) > changes


def test_llamacpp_reuses_the_prompt_prefix_by_default_unless_told_not_to() -> None:
    on = WorkerSettings(rooms=["r"])
    assert backend_options(on)["reuse_prompt_prefix"] is True
    off = WorkerSettings(rooms=["r"], prompt_cache=False)
    assert backend_options(off)["reuse_prompt_prefix"] is False
    explicit = WorkerSettings(rooms=["r"], backend_options={"reuse_prompt_prefix": False})
    assert backend_options(explicit)["reuse_prompt_prefix"] is False
    ollama = WorkerSettings(rooms=["r"], backend="ollama", backend_model="llama3.2:1b")
    assert "reuse_prompt_prefix" not in backend_options(ollama)
