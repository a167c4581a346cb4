"""A message is acknowledged only once a replica has it: a master left without a replica refuses
posts with an error that says so (nothing is acknowledged that one more failure would lose), and
accepts them again, with the same ids, once a replica is back."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from llmchat_tools.redis_cluster import RedisCluster

from tests.support.api import join, post
from tests.support.auth import admin_headers
from tests.support.procs import ChatService

ROOM = "lobby"


def test_a_master_without_replica_refuses_then_accepts_again(
    fresh_cluster: RedisCluster, tmp_path: Path
) -> None:
    svc = ChatService(
        fresh_cluster.url,
        tmp_path / "logs",
        name="cs-wait",
        env={"LLMCHAT_REDIS_WAIT_TIMEOUT_MS": "300"},
    )
    svc.start()
    try:
        r = httpx.post(svc.url + "/api/v1/rooms", json={"name": ROOM}, headers=admin_headers())
        assert r.status_code == 201, r.text
        join(svc.url, ROOM, "rita")
        assert post(svc.url, ROOM, "rita", "before", id="m-1").status_code in (200, 201)

        master = fresh_cluster.node_serving(f"llmchat:room:{{{ROOM}}}:timeline")
        replica = fresh_cluster.replica_of(master)
        fresh_cluster.kill(replica)
        refused = post(svc.url, ROOM, "rita", "alone", id="m-2")
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "storage_unavailable"
        assert "not confirmed by a Redis replica (0 of 1" in refused.text
        assert refused.headers["retry-after"] == "1"

        fresh_cluster.restart(replica)
        deadline = time.monotonic() + 60
        while True:  # the replica resyncs, then the same id is accepted
            again = post(svc.url, ROOM, "rita", "alone", id="m-2")
            if again.status_code in (200, 201) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert again.status_code in (200, 201), again.text
        listed = httpx.get(
            svc.url + f"/api/v1/rooms/{ROOM}/messages",
            params={"after": "0-0"},
            headers=admin_headers(),
        ).json()["entries"]
        humans = [e for e in listed if e["kind"] == "human"]
        assert [e["text"] for e in humans] == ["before", "alone"]  # stored once, in order
    finally:
        svc.stop()
