"""The room WebSocket: order, resume by cursor, bad frames."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from llmchat.client import ClientError, RoomClient
from tests.support.procs import ChatService


def create_room(svc: ChatService, name: str = "lobby") -> None:
    r = httpx.post(svc.url + "/api/v1/rooms", json={"name": name})
    assert r.status_code == 201, r.text


def stored(svc: ChatService, room: str = "lobby") -> list[dict[str, Any]]:
    r = httpx.get(
        svc.url + f"/api/v1/rooms/{room}/messages", params={"after": "0-0", "limit": 10000}
    )
    return list(r.json()["entries"])


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
    alice = RoomClient([chat_service.url], "lobby", "alice")
    bob = RoomClient([chat_service.url], "lobby", "bob")
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
    late = RoomClient([chat_service.url], "lobby", "alice", cursor=cursor)
    await late.start()
    await late.wait_for(lambda es: len(es) == 10)
    await asyncio.sleep(0.2)
    assert [e["text"] for e in late.entries] == [f"msg {i}" for i in range(10, 20)]
    await late.close()
    await bob.close()


async def test_repeated_post_frame_is_stored_once(chat_service: ChatService) -> None:
    create_room(chat_service)
    c = RoomClient([chat_service.url], "lobby", "dora")
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
    url = chat_service.ws_url + "/api/v1/rooms/lobby/ws?name=eve"
    async with websockets.connect(url) as ws:
        await recv_until(ws, "welcome")
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
    ("query", "code", "close_code"),
    [
        ("/rooms/nowhere/ws?name=eve", "room_not_found", 4404),
        ("/rooms/Not_A_Room/ws?name=eve", "room_not_found", 4404),
        ("/rooms/lobby/ws", "invalid_name", 4400),
        ("/rooms/lobby/ws?name=", "invalid_name", 4400),
        ("/rooms/lobby/ws?name=judge", "name_taken", 4409),
        ("/rooms/lobby/ws?name=eve&cursor=banana", "invalid_cursor", 4400),
    ],
)
async def test_refused_connections_say_why(
    chat_service: ChatService, query: str, code: str, close_code: int
) -> None:
    create_room(chat_service)
    async with websockets.connect(chat_service.ws_url + "/api/v1" + query) as ws:
        frame = json.loads(await ws.recv())
        assert frame["type"] == "error" and frame["code"] == code, frame
        with pytest.raises(websockets.ConnectionClosed):
            await ws.recv()
        assert ws.close_code == close_code
    assert stored(chat_service) == []


async def test_client_refused_for_unknown_room(chat_service: ChatService) -> None:
    c = RoomClient([chat_service.url], "nowhere", "eve")
    with pytest.raises(ClientError):
        await c.start(timeout=5)
    await c.close()


async def test_live_events_reach_every_client(chat_service: ChatService) -> None:
    import redis.asyncio as aioredis

    from llmchat import live

    create_room(chat_service)
    c = RoomClient([chat_service.url], "lobby", "finn")
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
