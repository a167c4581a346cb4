"""Several chat-service processes on one Redis behave as one service, and survive a SIGKILL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
from llmchat_tools.client import RoomClient

from tests.conftest import BOTH_REDIS
from tests.support.auth import admin_headers, headers, token
from tests.support.procs import ChatService


def stored_ids(svc: ChatService, room: str = "lobby", reader: str | None = None) -> list[str]:
    """The room's message ids, read as the admin or as ``reader`` (a member)."""
    r = httpx.get(
        svc.url + f"/api/v1/rooms/{room}/messages",
        params={"after": "0-0", "limit": 10000},
        headers=headers(reader) if reader else admin_headers(),
    )
    assert r.status_code == 200, r.text
    return [e["msg_id"] for e in r.json()["entries"]]


def create_lobby(svc: ChatService) -> None:
    r = httpx.post(svc.url + "/api/v1/rooms", json={"name": "lobby"}, headers=admin_headers())
    assert r.status_code == 201, r.text


@BOTH_REDIS
async def test_clients_on_two_replicas_see_the_same_order(
    chat_service_factory: Callable[..., ChatService],
) -> None:
    a, b = chat_service_factory("cs-a"), chat_service_factory("cs-b")
    create_lobby(a)
    on_a = RoomClient([a.url], "lobby", "ann", token=token("ann"))
    on_b = RoomClient([b.url], "lobby", "ben", token=token("ben"))
    await on_a.start()
    await on_b.start()
    assert on_a.replica == "cs-a" and on_b.replica == "cs-b"

    async def talk(client: RoomClient, prefix: str) -> None:
        for i in range(30):
            await client.post(f"{prefix}{i}", msg_id=f"{prefix}{i}")

    await asyncio.gather(talk(on_a, "a"), talk(on_b, "b"))
    for c in (on_a, on_b):
        await c.wait_for(lambda es: len(es) == 60)
    assert [e["id"] for e in on_a.entries] == [e["id"] for e in on_b.entries]
    assert [e["msg_id"] for e in on_a.entries] == stored_ids(a)
    # a token works on every replica (they share the signing key): ann reads from B
    assert stored_ids(b, reader="ann") == stored_ids(a)
    assert sorted(stored_ids(b)) == sorted(
        [f"a{i}" for i in range(30)] + [f"b{i}" for i in range(30)]
    )
    await on_a.close()
    await on_b.close()


@BOTH_REDIS
async def test_sigkill_a_replica_clients_resume_on_the_other_with_nothing_lost_or_twice(
    chat_service_factory: Callable[..., ChatService],
) -> None:
    a, b = chat_service_factory("cs-a"), chat_service_factory("cs-b")
    create_lobby(a)
    # three clients on A (failing over to B), two on B
    clients = [RoomClient([a.url, b.url], "lobby", f"a{i}", token=token(f"a{i}")) for i in range(3)]
    clients += [
        RoomClient([b.url, a.url], "lobby", f"b{i}", token=token(f"b{i}")) for i in range(2)
    ]
    for c in clients:
        await c.start()
    assert [c.replica for c in clients] == ["cs-a"] * 3 + ["cs-b"] * 2

    per_writer = 60
    acked: list[str] = []

    async def write(c: RoomClient) -> None:
        for i in range(per_writer):
            ack = await c.post(f"{c.name} says {i}", msg_id=f"{c.name}-{i}", timeout=20)
            acked.append(ack["ref"])
            await asyncio.sleep(0.005)

    writers = [asyncio.create_task(write(c)) for c in (clients[0], clients[3])]
    await asyncio.sleep(0.3)  # messages are flowing
    a.kill()
    await asyncio.wait_for(asyncio.gather(*writers), 60)

    total = 2 * per_writer
    expected = stored_ids(b)
    assert len(expected) == total and len(set(expected)) == total
    assert sorted(acked) == sorted(expected)
    for c in clients:
        await c.wait_for(lambda es: len(es) >= total, timeout=20)
        await asyncio.sleep(0.1)
        assert [e["msg_id"] for e in c.entries] == expected, c.name
        assert c.stats.duplicates_dropped == 0, c.name
    for c in clients[:3]:
        assert c.stats.reconnects == 1 and c.replica == "cs-b"
        assert max(c.stats.reconnect_times) < 1.0
    for c in clients:
        await c.close()
