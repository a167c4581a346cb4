"""The fan-out baseline: a minimal websockets + Redis pub/sub broadcast server, none of our logic.

It speaks just enough of the room WebSocket for the fan-out load: ``welcome`` on connect,
``{"type": "post"}`` → PUBLISH to the room's channel and ``ack``; every published message goes
to every local client of the room as an ``entry`` frame (serialised once, sent with
``websockets.broadcast``). No storage, no ordering guarantees, no resume, no membership: the
floor for a Python WebSocket fan-out on this machine.

Treated like chat-service where it is not "our logic": the same keep-alive (ping every 20 s,
20 s to answer) and the same Redis pool shape (512 connections, a caller waits up to 5 s for
one). redis-py's default asyncio pool (100 connections, then ``MaxConnectionsError`` at once)
made a burst of concurrent PUBLISHes raise in the handler, which closed the connection
(1011): 390 to 790 of 1000 clients lost in the first second of a 1000 msg/s run.

``python -m llmchat_tools.bench.baseline_server --port 9000 --redis-url redis://127.0.0.1:6379/0``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time
from typing import Any

import redis.asyncio as aioredis
import websockets
from websockets.asyncio.server import ServerConnection, broadcast, serve

CHANNEL = "bench:room:"


#: As ``llmchat.redis_conn`` (chat-service): connections in the pool, seconds to wait for one.
POOL_SIZE = 512
POOL_WAIT_S = 5.0


class Baseline:
    def __init__(self, redis_url: str) -> None:
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_url, max_connections=POOL_SIZE, timeout=POOL_WAIT_S, decode_responses=True
        )
        self.redis = aioredis.Redis.from_pool(pool)
        self.rooms: dict[str, set[ServerConnection]] = {}
        self.seq = 0

    async def handler(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else "/"
        parts = path.split("?", 1)[0].strip("/").split("/")  # api/v1/rooms/{room}/ws
        room = parts[3] if len(parts) >= 5 else "lobby"
        clients = self.rooms.setdefault(room, set())
        clients.add(ws)
        try:
            await ws.send(json.dumps({"type": "welcome", "room": room, "replica": "baseline"}))
            async for raw in ws:
                frame = json.loads(raw)
                if frame.get("type") != "post":
                    continue
                self.seq += 1
                entry = {
                    "id": f"{int(time.time() * 1000)}-{self.seq}",
                    "msg_id": frame.get("id"),
                    "kind": "human",
                    "text": frame.get("text", ""),
                    "ts": time.time(),
                }
                await self.redis.publish(CHANNEL + room, json.dumps(entry))
                await ws.send(json.dumps({"type": "ack", "ref": frame.get("id")}))
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            clients.discard(ws)

    async def relay(self) -> None:
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await pubsub.psubscribe(CHANNEL + "*")
        async for msg in pubsub.listen():
            if msg.get("type") != "pmessage":
                continue
            room = str(msg["channel"])[len(CHANNEL) :]
            clients = self.rooms.get(room)
            if clients:
                broadcast(clients, '{"type":"entry","entry":' + str(msg["data"]) + "}")


async def main(port: int, redis_url: str) -> None:
    app = Baseline(redis_url)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    relay = asyncio.create_task(app.relay())
    kwargs: dict[str, Any] = {
        "max_size": 2**20,
        "ping_interval": 20,  # chat-service: uvicorn ws_ping_interval=20, ws_ping_timeout=20
        "ping_timeout": 20,
        "backlog": 4096,
    }
    async with serve(app.handler, "127.0.0.1", port, **kwargs):
        await stop
    relay.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await relay
    await app.redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.redis_url))
