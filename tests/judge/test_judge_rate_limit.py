"""The judge's per-room cap on model calls, against a real redis-server: rounds over the limit
are deferred (kept pending, judged in order when the bucket refills), never lost silently."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from judge.rubric import labels
from judge.scorers import Scorer
from judge.service import GROUP, JudgeService
from judge.settings import JudgeSettings
from prometheus_client import REGISTRY
from pydantic import ValidationError

from llmchat import keys
from llmchat.models import EntryKind, NewEntry, RoomCreate, RoomMode, RoomModel
from llmchat.ratelimit import Limit
from llmchat.rooms import RoomStore
from llmchat.router import Router
from llmchat.timeline import Timeline
from tests.support.procs import RedisServer

ROOM = "ratelimited"


class Counting(Scorer):
    """A judge model that always gives a valid verdict and counts its calls."""

    def __init__(self) -> None:
        self.name = "counting"
        self.calls: list[float] = []

    async def complete(self, messages: list[dict[str, str]], n: int, attempt: int) -> str:
        self.calls.append(time.monotonic())
        return json.dumps({"scores": [{"id": x, "score": 5, "reason": "ok"} for x in labels(n)]})


def sample(name: str, **labels_: str) -> float:
    return REGISTRY.get_sample_value(name, labels_) or 0.0


async def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := await check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def queue_rounds(r: aioredis.Redis, n: int) -> list[str]:
    """``n`` answered rounds in a two-model room; returns their cuts, oldest first."""
    store = RoomStore(r)
    room = await store.create(
        RoomCreate(
            name=ROOM, mode=RoomMode.ALL, models=[RoomModel(name="ada"), RoomModel(name="bob")]
        )
    )
    await store.join(room, "alice")
    timeline = Timeline(r)
    router = Router(r, timeline)
    cuts = []
    for i in range(n):
        res = await router.post(ROOM, NewEntry(author="alice", text=f"question {i}?"))
        cut = res.append.entry.id
        cuts.append(cut)
        for model in ("ada", "bob"):
            await timeline.append(
                ROOM,
                NewEntry(
                    kind=EntryKind.MODEL, author=model, text=f"{model} {i}", meta={"cut": cut}
                ),
            )
    assert await r.xlen(keys.rounds(ROOM)) == n
    return cuts


@contextlib.asynccontextmanager
async def running(settings: JudgeSettings, scorer: Scorer) -> AsyncIterator[JudgeService]:
    redis = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    service = JudgeService(settings, redis, scorer)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await redis.aclose()


def settings_for(url: str, **over: Any) -> JudgeSettings:
    base: dict[str, Any] = {
        "redis_url": url,
        "rooms": [ROOM],
        "judge_method": "rubric",  # one model call per pass: the counts below are calls
        "judge_passes": 1,
        "judge_calls_burst": 2,
        "consumer": "judge-test",
        "round_deadline_s": 5,
    }
    return JudgeSettings(**{**base, **over})


async def outcomes(r: aioredis.Redis) -> list[tuple[str, str]]:
    """(round cut, outcome) of the judge's entries in the room, in timeline order."""
    entries = await Timeline(r).read_after(ROOM, "0-0", 1000)
    return [(e.meta["round"], e.meta["outcome"]) for e in entries if e.author == "judge"]


async def pending(r: aioredis.Redis) -> int:
    info: Any = await r.xpending(keys.rounds(ROOM), GROUP)
    return int(info["pending"])


async def test_rounds_over_the_limit_are_deferred_then_judged_in_order(
    redis_server: RedisServer,
) -> None:
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    cuts = await queue_rounds(r, 4)
    limited0 = sample("llmchat_judge_rate_limited_total", room=ROOM)
    scorer = Counting()
    # 2 calls at once, then one every 3 s
    settings = settings_for(redis_server.url, judge_calls_per_minute=20)
    async with running(settings, scorer) as service:
        first = await until(lambda: _at_least(r, 2), 15, "the first two verdicts (the burst)")
        assert first == [(cuts[0], "scored"), (cuts[1], "scored")]
        await asyncio.sleep(1.0)  # well inside the 3 s refill: nothing else may be judged
        assert await outcomes(r) == first
        assert len(scorer.calls) == 2
        assert [d.rnd.cut for d in service.deferred[ROOM]] == cuts[2:]
        assert await pending(r) == 2  # not acknowledged: a judge taking over would claim them
        assert sample("llmchat_judge_rate_limited_total", room=ROOM) - limited0 == 2
        # the bucket refills: the deferred rounds are judged, oldest first, one per refill
        done = await until(lambda: _at_least(r, 4), 20, "the deferred rounds' verdicts")
    assert done == [(cut, "scored") for cut in cuts]
    assert len(scorer.calls) == 4
    assert scorer.calls[2] - scorer.calls[1] >= 2.0  # paced by the bucket, not a rush
    assert await pending(r) == 0
    assert sample("llmchat_judge_rate_limited_total", room=ROOM) - limited0 == 2  # once each
    await r.aclose()


async def test_rounds_waiting_too_long_are_skipped_with_a_visible_note(
    redis_server: RedisServer,
) -> None:
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    cuts = await queue_rounds(r, 4)
    limited0 = sample("llmchat_judge_rate_limited_total", room=ROOM)
    skipped0 = sample("llmchat_judge_verdicts_total", room=ROOM, outcome="rate_limited")
    scorer = Counting()
    settings = settings_for(redis_server.url, judge_calls_per_minute=2, judge_defer_max_s=1.5)
    async with running(settings, scorer):
        got = await until(lambda: _at_least(r, 4), 15, "two verdicts and two notes")
    assert got == [
        (cuts[0], "scored"),
        (cuts[1], "scored"),
        (cuts[2], "rate_limited"),
        (cuts[3], "rate_limited"),
    ]
    assert len(scorer.calls) == 2  # the model was not called for the skipped rounds
    notes = [e for e in await Timeline(r).read_after(ROOM, "0-0", 1000) if e.author == "judge"]
    assert notes[2].kind == EntryKind.SYSTEM and "judge limit" in notes[2].text
    assert "2 per minute" in notes[2].text
    assert await pending(r) == 0
    assert sample("llmchat_judge_rate_limited_total", room=ROOM) - limited0 == 2
    assert sample("llmchat_judge_verdicts_total", room=ROOM, outcome="rate_limited") - skipped0 == 2
    await r.aclose()


async def test_retries_take_from_the_same_bucket(redis_server: RedisServer) -> None:
    """An unparseable verdict's retry is a model call too: over the limit, the round waits."""
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    cuts = await queue_rounds(r, 1)

    class Garbage(Counting):
        async def complete(self, messages: list[dict[str, str]], n: int, attempt: int) -> str:
            self.calls.append(time.monotonic())
            return "not a verdict"

    scorer = Garbage()
    settings = settings_for(
        redis_server.url, judge_calls_per_minute=1, judge_calls_burst=2, judge_retries=5
    )
    async with running(settings, scorer) as service:
        await until(lambda: _deferred(service), 10, "the round to be deferred")
        await asyncio.sleep(0.5)
        assert len(scorer.calls) == 2  # the burst, then no third call
        assert await outcomes(r) == []
        assert [d.rnd.cut for d in service.deferred[ROOM]] == cuts
    await r.aclose()


async def _at_least(r: aioredis.Redis, n: int) -> list[tuple[str, str]] | None:
    got = await outcomes(r)
    return got if len(got) >= n else None


async def _deferred(service: JudgeService) -> bool:
    return bool(service.deferred.get(ROOM))


def test_the_setting_comes_from_the_environment_and_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMCHAT_JUDGE_CALLS_PER_MINUTE", "12")
    monkeypatch.setenv("LLMCHAT_JUDGE_CALLS_BURST", "4")
    s = JudgeSettings()
    assert (s.judge_calls_per_minute, s.judge_calls_burst) == (12, 4)
    monkeypatch.setenv("LLMCHAT_JUDGE_CALLS_PER_MINUTE", "0")
    assert Limit(JudgeSettings().judge_calls_per_minute, 1).unlimited
    monkeypatch.setenv("LLMCHAT_JUDGE_CALLS_PER_MINUTE", "12")
    monkeypatch.setenv("LLMCHAT_JUDGE_CALLS_BURST", "1")
    with pytest.raises(ValidationError, match="judge_calls_burst must be at least judge_passes"):
        JudgeSettings(judge_passes=2)
    monkeypatch.setenv("LLMCHAT_JUDGE_CALLS_PER_MINUTE", "-1")
    with pytest.raises(ValidationError):
        JudgeSettings()
