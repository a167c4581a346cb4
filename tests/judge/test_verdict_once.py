"""A round moves the ratings once, however often it is judged: a judge that scores a round again
(it crashed before acknowledging it, or a standby took over) finds its verdict already stored,
and the ratings follow that stored verdict, once. Against a real redis-server."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from llmchat import keys
from llmchat.ratings import RatingStore
from llmchat.timeline import Timeline
from llmchat.wire import parse_round
from tests.judge.test_judge_rate_limit import (
    ROOM,
    Counting,
    _at_least,
    queue_rounds,
    running,
    settings_for,
    until,
)
from tests.support.procs import RedisServer


async def test_a_round_judged_twice_moves_the_ratings_once(redis_server: RedisServer) -> None:
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    (cut,) = await queue_rounds(r, 1)
    settings = settings_for(redis_server.url, judge_calls_per_minute=0)
    async with running(settings, Counting()) as service:
        await until(lambda: _at_least(r, 1), 15, "the verdict")
        after_first = await RatingStore(r).all(ROOM)
        assert {m: x.rounds for m, x in after_first.items()} == {"ada": 1, "bob": 1}
        # the same round again, as after a crash between storing the verdict and the ack
        rows: Any = await r.xrange(keys.rounds(ROOM))
        again = parse_round(ROOM, rows[0][0], rows[0][1])
        assert again.cut == cut
        await service.judge(again)
        after_second = await RatingStore(r).all(ROOM)
    assert after_second == after_first  # no second game, no second mean score
    verdicts = [e for e in await Timeline(r).read_after(ROOM, "0-0", 100) if e.author == "judge"]
    assert [v.msg_id for v in verdicts] == [f"verdict/{cut}"]
    assert await r.sismember(keys.rated_rounds(ROOM), cut)
    await r.aclose()


async def test_ratings_missed_by_a_crash_are_applied_from_the_stored_verdict(
    redis_server: RedisServer,
) -> None:
    """The verdict was stored but the ratings never moved (a crash in between): judging the
    round again applies the stored verdict's scores, once."""
    r = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    await queue_rounds(r, 1)
    settings = settings_for(redis_server.url, judge_calls_per_minute=0)
    async with running(settings, Counting()) as service:
        await until(lambda: _at_least(r, 1), 15, "the verdict")
        # the verdict is stored first, the ratings follow it
        scored = await until(lambda: RatingStore(r).all(ROOM), 15, "the ratings")
        await r.delete(keys.ratings(ROOM), keys.rated_rounds(ROOM))  # as if never applied
        rows: Any = await r.xrange(keys.rounds(ROOM))
        await service.judge(parse_round(ROOM, rows[0][0], rows[0][1]))
        await service.judge(parse_round(ROOM, rows[0][0], rows[0][1]))
        assert await RatingStore(r).all(ROOM) == scored
    await r.aclose()
