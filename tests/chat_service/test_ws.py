"""The room WebSocket: order, resume by cursor, bad frames."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import websockets
from llmchat_tools.client import ClientError, RoomClient

from llmchat.auth import TokenSigner
from tests.support.auth import ADMIN_TOKEN, TOKEN_SECRET, admin_headers, headers, token
from tests.support.procs import ChatService


def create_room(svc: ChatService, name: str = "lobby", **extra: object) -> None:
    r = httpx.post(svc.url + "/api/v1/rooms", json={"name": name, **extra}, headers=admin_headers())
    assert r.status_code == 201, r.text


def stored(svc: ChatService, room: str = "lobby") -> list[dict[str, Any]]:
    r = httpx.get(
        svc.url + f"/api/v1/rooms/{room}/messages",
        params={"after": "0-0", "limit": 10000},
        headers=admin_headers(),
    )
    assert r.status_code == 200, r.text
    return list(r.json()["entries"])


def members(svc: ChatService, room: str = "lobby") -> list[str]:
    r = httpx.get(svc.url + f"/api/v1/rooms/{room}/members", headers=admin_headers())
    assert r.status_code == 200, r.text
    return [m["name"] for m in r.json()["members"]]


def client(svc: ChatService, name: str, room: str = "lobby", **kw: Any) -> RoomClient:
    return RoomClient([svc.url], room, name, token=token(name), **kw)


def auth(who: str) -> dict[str, str]:
    """The ``Authorization`` header of a caller in the refusal table."""
    signed = {
        "garbage": "not-a-token",
        "expired": TokenSigner(TOKEN_SECRET, 60).issue("eve", now=time.time() - 7200).token,
        "foreign": TokenSigner("another-signing-key-" + "x" * 32, 3600).issue("eve").token,
        "admin": ADMIN_TOKEN,
    }
    if who == "nobody":
        return {}
    if who in signed:
        return {"Authorization": f"Bearer {signed[who]}"}
    return headers(who)


async def recv_until(
    ws: websockets.ClientConnection, kind: str, timeout: float = 5
) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind:
                return dict(frame)


async def test_entries_arrive_in_order_and_resume_from_cursor(chat_service: ChatService) -> None:
    create_room(chat_service)
    alice = client(chat_service, "alice")
    bob = client(chat_service, "bob")
    await alice.start()
    await bob.start()
    for i in range(20):
        ack = await (alice if i % 2 else bob).post(f"msg {i}", msg_id=f"m{i}")
        assert ack["duplicate"] is False
    await alice.wait_for(lambda es: len(es) == 20)
    await bob.wait_for(lambda es: len(es) == 20)
    assert [e["text"] for e in alice.entries] == [f"msg {i}" for i in range(20)]
    assert [e["id"] for e in alice.entries] == [e["id"] for e in bob.entries]
    assert [e["author"] for e in alice.entries[:2]] == ["bob", "alice"]

    cursor = alice.entries[9]["id"]
    await alice.close()
    late = client(chat_service, "alice", cursor=cursor)
    await late.start()
    await late.wait_for(lambda es: len(es) == 10)
    await asyncio.sleep(0.2)
    assert [e["text"] for e in late.entries] == [f"msg {i}" for i in range(10, 20)]
    await late.close()
    await bob.close()


async def test_repeated_post_frame_is_stored_once(chat_service: ChatService) -> None:
    create_room(chat_service)
    c = client(chat_service, "dora")
    await c.start()
    first = await c.post("hello", msg_id="dup-1")
    second = await c.post("hello", msg_id="dup-1")
    assert first["cursor"] == second["cursor"] and second["duplicate"] is True
    assert [e["msg_id"] for e in stored(chat_service)] == ["dup-1"]
    await c.close()


async def test_bad_frames_get_named_errors_and_socket_stays_usable(
    chat_service: ChatService,
) -> None:
    create_room(chat_service)
    # ``?name=`` is optional; when given it must be the token's own name.
    url = chat_service.ws_url + "/api/v1/rooms/lobby/ws?name=eve"
    async with websockets.connect(url, additional_headers=headers("eve")) as ws:
        welcome = await recv_until(ws, "welcome")
        assert welcome["member"]["name"] == "eve"
        cases = [
            ("this is not json", "invalid_json"),
            ("[1, 2, 3]", "invalid_frame"),
            (json.dumps({"type": "shout", "text": "hi"}), "unknown_type"),
            (json.dumps({"type": "post"}), "invalid_frame"),
            (json.dumps({"type": "post", "text": "x" * 9000, "id": "big"}), "message_too_large"),
            (json.dumps({"type": "post", "text": "  ", "id": "blank"}), "empty_message"),
            (
                json.dumps({"type": "post", "text": "hi", "id": "no spaces allowed"}),
                "invalid_frame",
            ),
            (json.dumps({"type": "post", "text": "hi", "extra": 1}), "invalid_frame"),
        ]
        for raw, code in cases:
            await ws.send(raw)
            err = await recv_until(ws, "error")
            assert err["code"] == code, (raw[:40], err)
            assert err["message"]
        big = await _error_for(ws, json.dumps({"type": "post", "text": "é" * 5000, "id": "b2"}))
        assert "10000 bytes" in big["message"] and "8192" in big["message"]
        await ws.send(b"\xff\xfe")
        assert (await recv_until(ws, "error"))["code"] == "invalid_frame"
        await ws.send(json.dumps({"type": "ping"}))
        await recv_until(ws, "pong")
        # still usable: a good post is acknowledged and delivered
        await ws.send(json.dumps({"type": "post", "id": "good", "text": "still here"}))
        got: dict[str, dict[str, Any]] = {}
        async with asyncio.timeout(5):
            while len(got) < 2:
                frame = json.loads(await ws.recv())
                if frame["type"] in ("ack", "entry"):
                    got[frame["type"]] = frame
        assert got["ack"]["ref"] == "good"
        assert got["entry"]["entry"]["text"] == "still here"
    assert [e["msg_id"] for e in stored(chat_service)] == ["good"]


async def _error_for(ws: websockets.ClientConnection, raw: str) -> dict[str, Any]:
    await ws.send(raw)
    return await recv_until(ws, "error")


@pytest.mark.parametrize(
    ("who", "query", "code", "close_code"),
    [
        ("eve", "/rooms/nowhere/ws", "room_not_found", 4404),
        ("eve", "/rooms/Not_A_Room/ws", "room_not_found", 4404),
        ("eve", "/rooms/secret/ws", "room_not_found", 4404),  # invitation-only, not invited
        ("eve", "/rooms/lobby/ws?name=", "forbidden", 4403),
        ("eve", "/rooms/lobby/ws?name=mallory", "forbidden", 4403),
        ("judge", "/rooms/lobby/ws", "name_taken", 4409),
        ("smol", "/rooms/lobby/ws", "name_taken", 4409),
        ("eve", "/rooms/lobby/ws?cursor=banana", "invalid_cursor", 4400),
        ("nobody", "/rooms/lobby/ws", "unauthenticated", 4401),
        ("nobody", "/rooms/lobby/ws?name=eve", "unauthenticated", 4401),
        ("garbage", "/rooms/lobby/ws", "invalid_token", 4401),
        ("expired", "/rooms/lobby/ws", "token_expired", 4401),
        ("foreign", "/rooms/lobby/ws", "invalid_token", 4401),
        ("admin", "/rooms/lobby/ws", "user_required", 4403),
    ],
)
async def test_refused_connections_say_why(
    chat_service: ChatService, who: str, query: str, code: str, close_code: int
) -> None:
    create_room(chat_service, models=[{"name": "smol"}])
    create_room(chat_service, "secret", visibility="invite")
    url = chat_service.ws_url + "/api/v1" + query
    async with websockets.connect(url, additional_headers=auth(who)) as ws:
        frame = json.loads(await ws.recv())
        assert frame["type"] == "error" and frame["code"] == code, frame
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == close_code
    assert stored(chat_service) == []
    assert members(chat_service) == []  # a refused connection joins nobody


async def test_browser_offers_its_token_as_a_subprotocol(chat_service: ChatService) -> None:
    create_room(chat_service)
    url = chat_service.ws_url + "/api/v1/rooms/lobby/ws"
    protocols = [
        websockets.Subprotocol("llmchat.v1"),
        websockets.Subprotocol(f"bearer.{token('gil')}"),
    ]
    async with websockets.connect(url, subprotocols=protocols) as ws:
        assert ws.subprotocol == "llmchat.v1"
        welcome = await recv_until(ws, "welcome")
        assert welcome["member"]["name"] == "gil"
    assert members(chat_service) == ["gil"]


async def test_client_refused_for_unknown_room(chat_service: ChatService) -> None:
    c = client(chat_service, "eve", room="nowhere")
    with pytest.raises(ClientError, match="4404"):
        await c.start(timeout=5)
    await c.close()


async def test_client_without_a_valid_token_is_refused_not_retried(
    chat_service: ChatService,
) -> None:
    create_room(chat_service)
    for c in (
        RoomClient([chat_service.url], "lobby", "eve"),
        RoomClient([chat_service.url], "lobby", "eve", token="not-a-token"),
    ):
        with pytest.raises(ClientError, match="4401"):
            await c.start(timeout=5)
        assert c.stats.connects == 0
        await c.close()
    assert members(chat_service) == []


async def test_live_events_reach_every_client(chat_service: ChatService) -> None:
    import redis.asyncio as aioredis

    from llmchat import live

    create_room(chat_service)
    c = client(chat_service, "finn")
    await c.start()
    r = aioredis.Redis.from_url(chat_service.redis_url)
    try:
        async with asyncio.timeout(5):
            while (
                await live.publish(r, "lobby", {"type": "delta", "model": "m", "text": "he"}) == 0
            ):
                await asyncio.sleep(0.05)
            while not c.live:
                await asyncio.sleep(0.02)
    finally:
        await r.aclose()
    assert c.live[0]["text"] == "he"
    assert stored(chat_service) == []  # ephemeral: never stored
    await c.close()
