"""Redis stops and starts mid-run: not ready while gone, recovers by itself, loses nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
from llmchat_tools.client import RoomClient

from tests.support.auth import admin_headers, headers, token
from tests.support.procs import ChatService, RedisServer


async def wait_status(url: str, status: int, timeout: float) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with httpx.AsyncClient() as http:
        while loop.time() - start < timeout:
            try:
                if (await http.get(url, timeout=2)).status_code == status:
                    return loop.time() - start
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s")


async def test_redis_restart_mid_run(
    redis_server: RedisServer, chat_service_factory: Callable[..., ChatService]
) -> None:
    svc = chat_service_factory("cs-a")
    r = httpx.post(svc.url + "/api/v1/rooms", json={"name": "lobby"}, headers=admin_headers())
    assert r.status_code == 201, r.text
    writer = RoomClient([svc.url], "lobby", "wes", token=token("wes"))
    reader = RoomClient([svc.url], "lobby", "rita", token=token("rita"))
    await writer.start()
    await reader.start()
    for i in range(10):
        await writer.post(f"before {i}", msg_id=f"before-{i}")

    redis_server.stop()
    await wait_status(svc.url + "/readyz", 503, 5)
    metrics = httpx.get(svc.url + "/metrics").text
    assert "llmchat_redis_up 0.0" in metrics
    r = httpx.post(svc.url + "/api/v1/rooms", json={"name": "another"}, headers=admin_headers())
    assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable"

    # a post while Redis is down is refused (not acknowledged); the client retries it
    pending = asyncio.create_task(writer.post("during outage", msg_id="during", timeout=30))
    deadline = time.monotonic() + 15
    while not any(e["code"] == "storage_unavailable" for e in writer.errors):
        assert time.monotonic() < deadline, f"no storage_unavailable frame: {writer.errors}"
        await asyncio.sleep(0.05)
    assert not pending.done()

    redis_server.start()
    await wait_status(svc.url + "/readyz", 200, 10)
    ack = await pending
    assert ack["ref"] == "during"
    for i in range(5):
        await writer.post(f"after {i}", msg_id=f"after-{i}")

    expected = [f"before-{i}" for i in range(10)] + ["during"] + [f"after-{i}" for i in range(5)]
    r = httpx.get(
        svc.url + "/api/v1/rooms/lobby/messages", params={"after": "0-0"}, headers=headers("rita")
    )
    assert r.status_code == 200, r.text
    assert [e["msg_id"] for e in r.json()["entries"]] == expected
    await reader.wait_for(lambda es: len(es) == len(expected), timeout=15)
    assert [e["msg_id"] for e in reader.entries] == expected
    assert reader.stats.duplicates_dropped == 0
    await writer.close()
    await reader.close()
