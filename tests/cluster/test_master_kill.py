"""Chaos on a real Redis Cluster: a master is SIGKILLed while several clients post to rooms it
serves. The cluster fails over; no acknowledged message is lost or stored twice; every client
ends with the stored order; and the time from the kill to posts accepted again is reported."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from llmchat_tools.client import ClientError, RoomClient
from llmchat_tools.redis_cluster import RedisCluster

from tests.support.auth import admin_headers, token
from tests.support.procs import ChatService

ROOM = "lobby"
WRITERS = 4
PER_WRITER = 60
#: Where each run appends its figures (one JSON line a run).
FIGURES = Path("/tmp/llmchat-master-kill.jsonl")


def stored(svc: ChatService) -> list[str]:
    r = httpx.get(
        svc.url + f"/api/v1/rooms/{ROOM}/messages",
        params={"after": "0-0", "limit": 10000},
        headers=admin_headers(),
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return [e["msg_id"] for e in r.json()["entries"]]


@pytest.mark.parametrize("run", range(5))
async def test_master_kill_loses_nothing_acknowledged(
    run: int, fresh_cluster: RedisCluster, tmp_path: Path
) -> None:
    svc = ChatService(fresh_cluster.url, tmp_path / "logs", name="cs-chaos")
    svc.start()
    try:
        r = httpx.post(svc.url + "/api/v1/rooms", json={"name": ROOM}, headers=admin_headers())
        assert r.status_code == 201, r.text
        clients = [
            RoomClient([svc.url], ROOM, f"w{i}", token=token(f"w{i}")) for i in range(WRITERS)
        ]
        for c in clients:
            await c.start()
        acked: list[str] = []
        killed_at: list[float] = []
        accepted_after_kill: list[float] = []
        refused = 0

        async def write(c: RoomClient) -> None:
            nonlocal refused
            for i in range(PER_WRITER):
                msg_id = f"{c.name}-{i}"
                deadline = time.monotonic() + 60
                while True:
                    sent = time.monotonic()
                    try:
                        ack = await c.post(f"{c.name} says {i}", msg_id=msg_id, timeout=2)
                        break
                    except (ClientError, TimeoutError):
                        refused += 1
                        assert time.monotonic() < deadline, f"{msg_id} never accepted"
                        await asyncio.sleep(0.05)
                acked.append(str(ack["ref"]))
                if killed_at and sent > killed_at[0] and not accepted_after_kill:
                    accepted_after_kill.append(time.monotonic())
                await asyncio.sleep(0.01)

        writers = [asyncio.create_task(write(c)) for c in clients]
        while len(acked) < WRITERS * PER_WRITER // 4:  # messages are flowing
            await asyncio.sleep(0.01)
        master = fresh_cluster.node_serving(f"llmchat:room:{{{ROOM}}}:timeline")
        killed_at.append(time.monotonic())
        fresh_cluster.kill_master(master)
        # The cluster promotes the killed master's replica; then the killed node is started
        # again, as Kubernetes restarts a pod, and rejoins as the new master's replica. Until a
        # replica is back, a post to that master is refused (WAIT: acknowledged only once a
        # replica has it), so the writers retry with the same ids.
        promoted = await asyncio.to_thread(fresh_cluster.wait_failover, master)
        failed_over = time.monotonic() - killed_at[0]
        await asyncio.to_thread(fresh_cluster.restart, master)
        await asyncio.wait_for(asyncio.gather(*writers), 120)
        fresh_cluster.wait_ok()
        assert promoted.address != master.address

        total = WRITERS * PER_WRITER
        order = stored(svc)
        lost = sorted(set(acked) - set(order))
        duplicated = len(order) - len(set(order))
        assert lost == [] and duplicated == 0
        assert sorted(acked) == sorted(order) and len(order) == total
        for c in clients:
            await c.wait_for(lambda es: len(es) >= total, timeout=30)
            await asyncio.sleep(0.1)
            assert [e["msg_id"] for e in c.entries] == order, c.name
        recovery = accepted_after_kill[0] - killed_at[0]
        figures = {
            "run": run,
            "kill_to_failover_s": round(failed_over, 3),
            "kill_to_posts_accepted_s": round(recovery, 3),
            "acknowledged": len(acked),
            "lost": len(lost),
            "duplicated": duplicated,
            "refused_then_retried": refused,
        }
        with FIGURES.open("a") as f:  # noqa: ASYNC230 - one line after the run
            f.write(json.dumps(figures) + "\n")
        print(json.dumps(figures))
        for c in clients:
            await c.close()
    finally:
        svc.stop()
