"""An invitation-only room one may not see costs exactly what a missing room does: the same
Redis commands, in one round trip (the outside test measured 1 read against 3, 0.3 ms apart
over 500 requests). Against a real chat-service and redis-server, counting what Redis runs."""

from __future__ import annotations

import statistics
import time

import httpx
import redis

from tests.support.auth import admin_headers, headers
from tests.support.net import require_local
from tests.support.procs import ChatService, RedisServer

PATHS = ("/rooms/{room}", "/rooms/{room}/messages", "/rooms/{room}/members")
REQUESTS = 50


def _commands(r: redis.Redis, run: object) -> dict[str, int]:
    """The commands Redis ran (name -> calls) while ``run()`` ran; the replica's once-a-second
    health PING is left out."""
    r.config_resetstat()
    assert callable(run)
    run()
    stats = r.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(v["calls"])
        for name, v in stats.items()
        if name not in ("cmdstat_ping", "cmdstat_config|resetstat", "cmdstat_info")
        and not name.startswith(("cmdstat_hello", "cmdstat_client"))  # a new pooled connection
    }


def test_a_hidden_room_reads_like_a_missing_one(
    chat_service: ChatService, shared_redis: RedisServer
) -> None:
    require_local("127.0.0.1")
    api = httpx.Client(base_url=chat_service.url + "/api/v1", timeout=10)
    body = {"name": "secret", "visibility": "invite", "models": [{"name": "m"}]}
    assert api.post("/rooms", json=body, headers=admin_headers()).status_code == 201
    eve = headers("eve")
    api.get("/auth/me", headers=eve)  # warm up
    r = redis.Redis.from_url(shared_redis.url, decode_responses=True)
    timings: dict[str, list[float]] = {"secret": [], "nosuch": []}

    def ask(room: str) -> None:
        for _ in range(REQUESTS):
            for path in PATHS:
                started = time.perf_counter()
                answer = api.get(path.format(room=room), headers=eve)
                timings[room].append(time.perf_counter() - started)
                assert answer.status_code == 404
                assert answer.json()["error"]["code"] == "room_not_found"

    hidden = _commands(r, lambda: ask("secret"))
    missing = _commands(r, lambda: ask("nosuch"))
    print(
        f"\nRedis commands for {REQUESTS * len(PATHS)} requests: hidden {hidden}, "
        f"missing {missing}; median ms hidden "
        f"{statistics.median(timings['secret']) * 1000:.2f}, missing "
        f"{statistics.median(timings['nosuch']) * 1000:.2f}"
    )
    assert hidden == missing
    # the same reads for every request (the room's three, and the token's user)
    assert all(calls % (REQUESTS * len(PATHS)) == 0 for calls in hidden.values()), hidden
    r.close()
