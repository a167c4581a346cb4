"""Storing a message and its jobs atomically, against a real redis-server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis.asyncio as aioredis
from chat_service.protocol import PostFrame
from pydantic import ValidationError

from llmchat import keys
from llmchat.ids import server_id_kind, server_msg_id, validate_client_msg_id, validate_msg_id
from llmchat.keys import LEADER_QUEUE
from llmchat.models import EntryKind, NewEntry, RoomCreate, RoomMode, RoomModel
from llmchat.redis_conn import create_redis
from llmchat.rooms import RoomStore
from llmchat.router import Router
from llmchat.timeline import MessageIdConflictError, Timeline
from tests.conftest import BOTH_REDIS
from tests.support.procs import RedisServer


async def setup(url: str, mode: RoomMode) -> tuple[aioredis.Redis, Router, Timeline]:
    r = create_redis(url)  # one Redis or a cluster, found by asking
    store = RoomStore(r)
    room = await store.create(
        RoomCreate(name="lobby", mode=mode, models=[RoomModel(name="ada"), RoomModel(name="bob")])
    )
    await store.join(room, "alice")
    tl = Timeline(r)
    return r, Router(r, tl, max_model_streak=2), tl


@BOTH_REDIS
async def test_all_mode_writes_one_job_per_model_with_the_message_as_cut(
    redis_server: RedisServer,
) -> None:
    r, router, tl = await setup(redis_server.url, RoomMode.ALL)
    res = await router.post("lobby", NewEntry(msg_id="h1", author="alice", text="hi"))
    cut = res.append.entry.id
    for model in ("ada", "bob"):
        jobs: Any = await r.xrange(keys.jobs("lobby", model))
        assert len(jobs) == 1
        assert jobs[0][1]["cut"] == cut and jobs[0][1]["msg"] == "h1"
    assert res.append.entry.meta["route"] == {"to": ["ada", "bob"], "reason": "all"}
    rounds: Any = await r.xrange(keys.rounds("lobby"))
    assert len(rounds) == 1 and rounds[0][1]["cut"] == cut
    assert json.loads(rounds[0][1]["models"]) == ["ada", "bob"]
    # the same message id again: stored once, and no second job
    again = await router.post("lobby", NewEntry(msg_id="h1", author="alice", text="hi"))
    assert again.append.duplicate and again.append.entry.id == cut
    assert await r.xlen(keys.jobs("lobby", "ada")) == 1
    assert await tl.length("lobby") == 1
    await r.aclose()


async def test_unknown_mention_gets_a_system_notice(redis_server: RedisServer) -> None:
    r, router, tl = await setup(redis_server.url, RoomMode.LEADER)
    res = await router.post("lobby", NewEntry(author="alice", text="@zed are you there?"))
    assert res.notice is not None
    assert "@zed" in res.notice.text and "@ada" in res.notice.text
    entries = await tl.read_after("lobby")
    assert [e.kind for e in entries] == [EntryKind.HUMAN, EntryKind.SYSTEM]
    assert await r.xlen(keys.jobs("lobby", LEADER_QUEUE)) == 1  # the leader still answers
    await r.aclose()


async def test_model_chain_is_capped_until_a_person_speaks(redis_server: RedisServer) -> None:
    r, router, _ = await setup(redis_server.url, RoomMode.LEADER)
    await router.post("lobby", NewEntry(author="alice", text="@ada start"))
    for i in range(3):
        who, other = ("ada", "bob") if i % 2 == 0 else ("bob", "ada")
        res = await router.post(
            "lobby", NewEntry(kind=EntryKind.MODEL, author=who, text=f"@{other} your turn {i}")
        )
        assert res.route.targets == ([other] if i < 2 else [])
    assert res.route.capped and res.notice is not None
    res = await router.post("lobby", NewEntry(author="alice", text="@bob go on"))
    assert res.route.targets == ["bob"]
    res = await router.post("lobby", NewEntry(kind=EntryKind.MODEL, author="bob", text="@ada ok"))
    assert res.route.targets == ["ada"]
    await r.aclose()


@BOTH_REDIS
async def test_fenced_post_is_refused_once_the_lease_moved_on(redis_server: RedisServer) -> None:
    from llmchat.lease import RedisLease
    from llmchat.router import Fence, FencedError

    r, router, tl = await setup(redis_server.url, RoomMode.LEADER)
    lease = RedisLease(r, "room-lobby", duration_s=0.3, key=keys.room_lease("lobby"))
    rec = await lease.try_acquire("ada")
    assert rec is not None
    fence = Fence(lease.key, "ada", rec.term)
    ok = await router.post("lobby", NewEntry(kind=EntryKind.MODEL, author="ada", text="a"), fence)
    assert not ok.append.duplicate
    await asyncio.sleep(0.4)  # the lease lapses; bob takes it
    assert (await lease.try_acquire("bob")) is not None
    with pytest.raises(FencedError):
        await router.post("lobby", NewEntry(kind=EntryKind.MODEL, author="ada", text="b"), fence)
    assert [e.text for e in await tl.read_after("lobby")] == ["a"]
    await r.aclose()


@BOTH_REDIS
async def test_an_id_taken_by_another_author_is_a_conflict_not_a_duplicate(
    redis_server: RedisServer,
) -> None:
    r, router, tl = await setup(redis_server.url, RoomMode.LEADER)
    first = await router.post("lobby", NewEntry(msg_id="m1", author="alice", text="mine"))
    # the author re-sending is an idempotent retry
    again = await router.post("lobby", NewEntry(msg_id="m1", author="alice", text="mine"))
    assert again.append.duplicate and again.append.entry.id == first.append.entry.id
    # anyone else using the id is refused, through the router and the plain append alike
    with pytest.raises(MessageIdConflictError, match="another author"):
        await router.post("lobby", NewEntry(msg_id="m1", author="bob", text="theirs"))
    with pytest.raises(MessageIdConflictError):
        await tl.append(
            "lobby", NewEntry(msg_id="m1", kind=EntryKind.MODEL, author="ada", text="answer")
        )
    with pytest.raises(MessageIdConflictError):  # the same name, another kind
        await tl.append(
            "lobby", NewEntry(msg_id="m1", kind=EntryKind.SYSTEM, author="alice", text="x")
        )
    assert [e.text for e in await tl.read_after("lobby")] == ["mine"]
    await r.aclose()


def test_server_made_ids_are_out_of_every_client_s_reach() -> None:
    cut = "1700000000000-0"
    made = [
        server_msg_id("lead", cut),
        server_msg_id("ans", "smol", cut),
        server_msg_id("err", "smol", cut),
        server_msg_id("verdict", cut),
        server_msg_id("notice", *server_msg_id("ans", "smol", cut).split("/")),
        server_msg_id("notice", "x" * 64),
    ]
    for value in made:
        assert validate_msg_id(value) == value  # storable
        with pytest.raises(ValueError, match="invalid message id"):
            validate_client_msg_id(value)  # but no client may send it
        with pytest.raises(ValidationError):
            PostFrame.model_validate({"type": "post", "id": value, "text": "hi"})
    # and every id a client may choose stays out of the server's namespace
    for value in ("lead.1700000000000-0", "ans.smol.1-0", "verdict.x", "a" * 64, "x:y-z_1."):
        assert validate_client_msg_id(value) == value
        assert server_id_kind(value) is None
    assert server_id_kind(made[0]) == "lead" and server_id_kind(made[4]) == "notice"
