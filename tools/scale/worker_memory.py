"""Resident memory of one model-worker (SmolLM2-135M through llama.cpp) following 1 room, then
200 rooms idle, then after one answered turn in 20 of them: the per-room cost in docs/scale.md.

Run from the repository root: ``.venv/bin/python tools/scale/worker_memory.py``. Starts its own
redis-server and chat-service on 127.0.0.1 (the test suite's process helpers) and stops them.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.support.api import join, make_room, post
from tests.support.auth import admin_headers
from tests.support.procs import ChatService, ModelWorker, RedisServer

ROOMS = [f"r{i}" for i in range(200)]
ASKED = ROOMS[:20]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def answered(svc: ChatService, room: str) -> bool:
    r = httpx.get(
        f"{svc.url}/api/v1/rooms/{room}/messages", params={"after": "0-0"}, headers=admin_headers()
    )
    return any(e["kind"] == "model" for e in r.json()["entries"])


def measure(svc: ChatService, redis: RedisServer, tmp: Path, rooms: int) -> dict[str, float]:
    w = ModelWorker(
        redis.url, tmp / "logs", "smol", rooms=",".join(ROOMS[:rooms]),
        env={"LLMCHAT_MAX_TOKENS": "16"},
    )  # fmt: skip
    w.start()
    try:
        time.sleep(8)
        assert w.proc is not None
        out = {f"idle_{rooms}_rooms_mib": round(rss_mib(w.proc.pid), 1)}
        if rooms == len(ROOMS):
            for room in ASKED:
                join(svc.url, room, "alice")
                post(svc.url, room, "alice", "Say hi.")
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and not all(answered(svc, r) for r in ASKED):
                time.sleep(2)
            out["answered_rooms"] = sum(answered(svc, r) for r in ASKED)
            out[f"after_{len(ASKED)}_turns_mib"] = round(rss_mib(w.proc.pid), 1)
        return out
    finally:
        w.stop()


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="llmchat-worker-memory-"))
    redis = RedisServer(tmp / "redis")
    redis.start()
    svc = ChatService(redis.url, tmp / "logs", name="cs")
    svc.start()
    try:
        for room in ROOMS:
            make_room(svc.url, room, mode="all", models=["smol"])
        figures = {**measure(svc, redis, tmp, 1), **measure(svc, redis, tmp, len(ROOMS))}
    finally:
        svc.stop()
        redis.stop()
    sys.stdout.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    main()
