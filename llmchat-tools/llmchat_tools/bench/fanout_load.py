"""The fan-out bench's load generator, run in child processes: raw ``websockets`` clients that
connect, post at the given rate over their own WebSockets (each text carries its send time) and
time every delivery; connections closed during the run are recorded with who closed them."""

from __future__ import annotations

import asyncio
import heapq
import json
import os
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from llmchat.auth import authorization
from llmchat_tools.bench._common import raise_nofile


@dataclass(frozen=True)
class LoadSpec:
    urls: list[str]  # ws base URLs (clients spread round-robin over them)
    clients: list[tuple[int, str]]  # (client number, room)
    rate: float
    duration: float
    server: str
    tokens: dict[int, str]  # client ``u<n>``'s token (registered before the load starts)


class _Load:
    """One process's share of the clients, and what they saw."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.latencies: list[float] = []
        self.slowest: list[tuple[float, float]] = []  # heap of (latency, send time)
        self.received = 0
        self.last_arrival = 0.0
        self.window = [float("inf"), float("inf")]
        self.senders: dict[str, Any] = {}  # room -> the connection that posts to it
        self.by_room: dict[str, list[Any]] = {}
        self.conns: list[Any] = []
        self.sem = asyncio.Semaphore(64)
        self.failed = 0
        self.finished = False
        self.closes: list[tuple[str, int | None, str, float]] = []  # (by, code, reason, when)
        self.lag_max = 0.0
        self.sent_per_room: dict[str, int] = {}
        self.send_failures: dict[str, int] = {}  # reason -> posts that could not be sent
        self.sender_switches = 0

    async def watch_lag(self) -> None:  # how late the event loop runs a 50 ms timer
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.05)
            self.lag_max = max(self.lag_max, time.monotonic() - t - 0.05)

    async def _connect(self, num: int, room: str) -> Any | None:
        """The client's connection once welcomed, or None (counted as failed)."""
        import websockets  # noqa: PLC0415

        base = self.spec.urls[num % len(self.spec.urls)]
        url = f"{base}/api/v1/rooms/{room}/ws?cursor=0-0"
        try:
            async with self.sem:
                ws = await websockets.connect(
                    url,
                    open_timeout=120,
                    max_size=2**20,
                    compression=None,
                    ping_interval=None,
                    additional_headers=authorization(self.spec.tokens[num]),
                )
                first = json.loads(await ws.recv())
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
            self.failed += 1
            return None
        if first.get("type") != "welcome":  # refused (e.g. the token): not a connection
            self.failed += 1
            await ws.close()
            return None
        return ws

    def _arrived(self, raw: Any) -> None:
        if not isinstance(raw, str) or not raw.startswith('{"type":"entry"'):
            return
        now = time.time()
        text = json.loads(raw)["entry"]["text"]
        if not text.startswith("t="):
            return
        sent = float(text[2 : text.index(" ")])
        if self.window[0] <= sent <= self.window[1]:
            self.received += 1
            self.last_arrival = now
            self.latencies.append(now - sent)
            if len(self.slowest) < 20:
                heapq.heappush(self.slowest, (now - sent, sent))
            elif now - sent > self.slowest[0][0]:
                heapq.heapreplace(self.slowest, (now - sent, sent))

    async def client(self, num: int, room: str) -> None:
        import websockets  # noqa: PLC0415

        ws = await self._connect(num, room)
        if ws is None:
            return
        self.conns.append(ws)
        self.by_room.setdefault(room, []).append(ws)
        self.senders.setdefault(room, ws)
        try:
            async for raw in ws:
                self._arrived(raw)
        except websockets.exceptions.ConnectionClosed:
            pass
        except Exception as exc:  # a frame the load generator can't read: report, don't hide
            self.closes.append(("load generator", None, type(exc).__name__, time.time()))
            await ws.close()
            return
        if not self.finished:  # closed during the run (the end-of-run cancel never gets here)
            self.closes.append((_closer(ws), ws.close_code, ws.close_reason or "", time.time()))

    def _sender(self, room: str) -> Any | None:
        """The room's open sender: another open client of the room once the first closed."""
        from websockets.protocol import State  # noqa: PLC0415

        ws = self.senders[room]
        if ws.state is State.OPEN:
            return ws
        ws = next((c for c in self.by_room[room] if c.state is State.OPEN), None)
        if ws is None:
            why = "no open client in the room"
            self.send_failures[why] = self.send_failures.get(why, 0) + 1
            return None
        self.senders[room] = ws
        self.sender_switches += 1
        return ws

    async def post(self, start: float) -> None:
        """Post at the spec's rate, round-robin over the rooms, until the window ends."""
        rooms = sorted(self.senders)
        sent = 0
        while rooms and time.time() < self.window[1]:
            due = int((time.time() - start) * self.spec.rate) - sent
            for _ in range(max(0, due)):
                room = rooms[sent % len(rooms)]
                sent += 1
                ws = self._sender(room)
                if ws is None:
                    continue
                text = f"t={time.time():.6f} fanout"
                frame = json.dumps({"type": "post", "id": uuid.uuid4().hex, "text": text})
                try:
                    await ws.send(frame)
                except Exception as exc:  # counted and reported, never hidden
                    key = type(exc).__name__
                    self.send_failures[key] = self.send_failures.get(key, 0) + 1
                    continue
                self.sent_per_room[room] = self.sent_per_room.get(room, 0) + 1
            await asyncio.sleep(0.005)

    async def drain(self) -> None:
        """Until nothing new arrives for a second (at most 30 s)."""
        deadline = time.time() + 30
        last = -1
        while time.time() < deadline and self.received != last:
            last = self.received
            await asyncio.sleep(1.0)

    def result(self, start: float, open_now: int) -> dict[str, Any]:
        return {
            "connected": len(self.conns),
            "failed": self.failed,
            "open_at_end": open_now,
            "received": self.received,
            "start": start,
            "last_arrival": self.last_arrival,
            "sent_per_room": self.sent_per_room,
            "send_failures": self.send_failures,
            "sender_switches": self.sender_switches,
            "closes": [(by, code, why, when - start) for by, code, why, when in self.closes],
            "loop_lag_max_ms": self.lag_max * 1000,
            "latencies": self.latencies,
            "slowest": [(round(lat * 1000, 1), round(at - start, 3)) for lat, at in self.slowest],
        }


async def _load(spec: LoadSpec, pipe: Connection) -> dict[str, Any]:
    from websockets.protocol import State  # noqa: PLC0415

    raise_nofile(65536)
    load = _Load(spec)
    tasks = [asyncio.create_task(load.client(n, r)) for n, r in spec.clients]
    while len(load.conns) + load.failed < len(spec.clients):  # noqa: ASYNC110 - bounded poll
        await asyncio.sleep(0.1)
    pipe.send(("ready", len(load.conns), load.failed))
    go = await asyncio.to_thread(pipe.recv)
    start = float(go)
    await asyncio.sleep(max(0.0, start - time.time()))
    load.window[0], load.window[1] = start, start + spec.duration
    lag = asyncio.create_task(load.watch_lag())
    await load.post(start)
    await load.drain()
    open_now = sum(1 for ws in load.conns if ws.state is State.OPEN)
    load.finished = True
    lag.cancel()
    for task in tasks:
        task.cancel()
    return load.result(start, open_now)


def _closer(ws: Any) -> str:
    """Who closed a connection: the side whose close frame came first, or ``lost`` (no closing
    handshake: the TCP connection ended or was aborted)."""
    proto = ws.protocol
    if proto.close_rcvd is not None and proto.close_rcvd_then_sent is not False:
        return "server"
    if proto.close_sent is not None:
        return "client"
    return "lost"


def load_process(spec: LoadSpec, pipe: Connection) -> None:
    """A load-generator process: run the load, send its result up the pipe, exit hard."""
    try:
        result = asyncio.run(_load(spec, pipe))
        pipe.send(("done", result))
    except Exception as exc:  # report, never hang the parent
        pipe.send(("error", repr(exc)))
    finally:
        pipe.close()
        os._exit(0)  # don't close thousands of sockets politely
