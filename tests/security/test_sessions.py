"""Tokens and the sockets they open (the outside test: a socket kept posting after its token
expired, nobody could sign out, a refresh chain never ended, and a token outlived its user).
Against real chat-service processes, a real redis-server and real sockets on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import redis
import websockets
from websockets.exceptions import ConnectionClosed

from llmchat import keys
from tests.support.api import all_entries, make_room
from tests.support.auth import admin_headers, issued, token
from tests.support.net import require_local
from tests.support.procs import ChatService, RedisServer

StartService = Callable[..., ChatService]
FAST = {"LLMCHAT_WS_AUTH_RECHECK_S": "0.5"}


def _auth(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


async def _until(ws: Any, kinds: tuple[str, ...], timeout: float = 20) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame["type"] in kinds:
                return frame


async def _closed(ws: Any, timeout: float = 20) -> tuple[int | None, list[dict[str, Any]]]:
    """Read until the service closes the socket: (close code, the frames before it)."""
    frames: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                frames.append(json.loads(await ws.recv()))
    except ConnectionClosed:
        return ws.close_code, frames
    except TimeoutError:
        raise AssertionError(f"the socket was still open after {timeout} s: {frames}") from None


async def test_a_socket_closes_when_its_token_expires_and_posts_no_more(
    chat_service_factory: StartService,
) -> None:
    require_local("127.0.0.1")
    svc = chat_service_factory("expiry")
    make_room(svc.url, "lobby", "all", [])
    short = issued("alice", ttl_seconds=3)
    async with websockets.connect(
        f"{svc.ws_url}/api/v1/rooms/lobby/ws", additional_headers=_auth(short.token)
    ) as ws:
        await _until(ws, ("welcome",))
        await ws.send(json.dumps({"type": "post", "id": "before", "text": "in time"}))
        assert (await _until(ws, ("ack",)))["ref"] == "before"
        await asyncio.sleep(max(0.0, short.expires_at - time.time()) + 0.2)
        for i in range(3):  # what the outside test did: post after the expiry
            with contextlib.suppress(ConnectionClosed):
                await ws.send(json.dumps({"type": "post", "id": f"late-{i}", "text": "late"}))
        code, frames = await _closed(ws, timeout=10)
    assert code == 4401
    assert any(f.get("code") == "token_expired" for f in frames), frames
    assert not any(f["type"] == "ack" for f in frames), frames
    assert [e["msg_id"] for e in all_entries(svc.url)] == ["before"]


async def test_a_fresh_token_sent_in_band_keeps_the_socket_open(
    chat_service_factory: StartService,
) -> None:
    require_local("127.0.0.1")
    svc = chat_service_factory("reauth")
    make_room(svc.url, "lobby", "all", [])
    short = issued("alice", ttl_seconds=3)
    async with websockets.connect(
        f"{svc.ws_url}/api/v1/rooms/lobby/ws", additional_headers=_auth(short.token)
    ) as ws:
        await _until(ws, ("welcome",))
        # someone else's token is no way to stay on alice's socket
        await ws.send(json.dumps({"type": "auth", "token": token("mallory")}))
        refused = await _until(ws, ("error",))
        assert refused["code"] == "forbidden"
        fresh = issued("alice", ttl_seconds=3600)
        await ws.send(json.dumps({"type": "auth", "token": fresh.token}))
        accepted = await _until(ws, ("authenticated",))
        assert accepted["user"] == "alice" and accepted["expires_at"] == fresh.expires_at
        await asyncio.sleep(max(0.0, short.expires_at - time.time()) + 1.0)
        await ws.send(json.dumps({"type": "post", "id": "after", "text": "still here"}))
        assert (await _until(ws, ("ack",)))["ref"] == "after"
    assert [e["msg_id"] for e in all_entries(svc.url)] == ["after"]


async def test_signing_out_ends_every_token_and_open_socket_of_the_user(
    chat_service_factory: StartService,
) -> None:
    require_local("127.0.0.1")
    svc = chat_service_factory("logout", **FAST)
    make_room(svc.url, "lobby", "all", [])
    async with httpx.AsyncClient(base_url=svc.url + "/api/v1", timeout=10) as api:
        first = (await api.post("/auth/signup", json={"name": "alice"})).json()["token"]
        second = (await api.post("/auth/refresh", headers=_auth(first))).json()["token"]
        async with websockets.connect(
            f"{svc.ws_url}/api/v1/rooms/lobby/ws", additional_headers=_auth(first)
        ) as ws:
            await _until(ws, ("welcome",))
            assert (await api.post("/auth/logout", headers=_auth(second))).status_code == 204
            code, frames = await _closed(ws, timeout=15)
        assert code == 4401
        assert any(f.get("code") == "token_revoked" for f in frames), frames
        for tok in (first, second):
            r = await api.get("/auth/me", headers=_auth(tok))
            assert r.status_code == 401 and r.json()["error"]["code"] == "token_revoked"
            assert (await api.post("/auth/refresh", headers=_auth(tok))).status_code == 401
        # the name stays taken; the admin can hand its owner a new token, which works
        assert (await api.post("/auth/signup", json={"name": "alice"})).status_code == 409
        r = await api.post("/auth/tokens", json={"name": "alice"}, headers=admin_headers())
        me = await api.get("/auth/me", headers=_auth(r.json()["token"]))
        assert me.json()["user"] == "alice"


def test_a_refresh_chain_ends(chat_service_factory: StartService) -> None:
    require_local("127.0.0.1")
    day = 86400
    svc = chat_service_factory(
        "chain", LLMCHAT_TOKEN_TTL_SECONDS=str(day), LLMCHAT_MAX_SESSION_SECONDS=str(7 * day)
    )
    api = httpx.Client(base_url=svc.url + "/api/v1", timeout=10)
    now = time.time()
    # a sign-in six days and 23 hours old: its refresh lives to the seventh day, not a day on
    late = issued("alice", ttl_seconds=day, session_start=now - 7 * day + 3600)
    r = api.post("/auth/refresh", headers=_auth(late.token))
    assert r.status_code == 200, r.text
    assert r.json()["expires_at"] <= now - 7 * day + 3600 + 7 * day + 1
    assert r.json()["expires_at"] < now + 2 * 3600
    # and that token, refreshed again, still ends there
    again = api.post("/auth/refresh", headers=_auth(r.json()["token"]))
    assert again.status_code == 200 and again.json()["expires_at"] == r.json()["expires_at"]
    # a sign-in older than seven days is not refreshed at all
    old = issued("alice", ttl_seconds=day, session_start=now - 7 * day - 10)
    r = api.post("/auth/refresh", headers=_auth(old.token))
    assert r.status_code == 401 and r.json()["error"]["code"] == "session_ended"
    # a sign-up's token starts a chain: a day of life, within the seven
    signup = api.post("/auth/signup", json={"name": "bob"}).json()
    assert now + day - 60 <= signup["expires_at"] <= now + day + 60


def test_a_token_does_not_survive_its_user(
    chat_service_factory: StartService, redis_server: RedisServer
) -> None:
    require_local("127.0.0.1")
    svc = chat_service_factory("users")
    api = httpx.Client(base_url=svc.url + "/api/v1", timeout=10)
    assert (
        api.post(
            "/rooms", json={"name": "club", "visibility": "invite"}, headers=admin_headers()
        ).status_code
        == 201
    )
    old = api.post("/auth/signup", json={"name": "alice"}).json()["token"]
    assert (
        api.post("/rooms/club/members", json={"name": "alice"}, headers=admin_headers()).status_code
        == 201
    )
    assert api.get("/rooms/club/messages", headers=_auth(old)).status_code == 200

    # the admin deletes alice: her token stops working, the name is free
    assert api.delete("/users/alice", headers=admin_headers()).status_code == 204
    assert api.delete("/users/alice", headers=admin_headers()).status_code == 404
    r = api.get("/auth/me", headers=_auth(old))
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_revoked"
    # someone new takes the name: the old token does not name them, and they are in no room
    new = api.post("/auth/signup", json={"name": "alice"}).json()["token"]
    assert api.get("/auth/me", headers=_auth(new)).json()["user"] == "alice"
    assert api.get("/auth/me", headers=_auth(old)).status_code == 401
    assert api.get("/rooms/club/messages", headers=_auth(new)).status_code == 404
    assert [r["name"] for r in api.get("/rooms", headers=_auth(new)).json()["rooms"]] == []

    # the same when the record is lost any other way (the outside test freed the name in
    # Redis): a token names a registration, not just a name
    bob = api.post("/auth/signup", json={"name": "bob"}).json()["token"]
    with redis.Redis.from_url(redis_server.url) as r_:
        r_.hdel(keys.users(), "bob")
    assert api.get("/auth/me", headers=_auth(bob)).status_code == 401
    api.post("/auth/signup", json={"name": "bob"})
    assert api.get("/auth/me", headers=_auth(bob)).status_code == 401


async def test_a_removed_member_s_socket_is_closed(chat_service_factory: StartService) -> None:
    require_local("127.0.0.1")
    svc = chat_service_factory("removed", **FAST)
    make_room(svc.url, "lobby", "all", [])
    async with websockets.connect(
        f"{svc.ws_url}/api/v1/rooms/lobby/ws", additional_headers=_auth(token("bob"))
    ) as ws:
        await _until(ws, ("welcome",))
        r = httpx.delete(f"{svc.url}/api/v1/rooms/lobby/members/bob", headers=admin_headers())
        assert r.status_code == 204
        code, frames = await _closed(ws, timeout=15)
    assert code == 4403
    assert any(f.get("code") == "not_a_member" for f in frames), frames
