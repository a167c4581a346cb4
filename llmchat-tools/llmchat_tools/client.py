"""A resilient room client over the WebSocket protocol (used by `llmchat chat`, benches, tests).

It keeps the cursor of the last entry it received and, when the connection drops, reconnects to
the next chat-service address with that cursor, so it ends with every entry exactly once. Posts
carry a client-made id and are re-sent after a reconnect until acknowledged (appends are
idempotent, so a re-send never stores twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import websockets
from websockets.asyncio.client import ClientConnection

from llmchat.auth import authorization
from llmchat.ids import is_after
from llmchat.logs import get_logger
from llmchat.tasks import stop_task

log = get_logger(__name__)


#: Close codes after which reconnecting cannot help: bad request, no valid token, forbidden,
#: unknown room, name taken, too many connections.
FATAL_CLOSES = (4400, 4401, 4403, 4404, 4409, 4429)
#: Error frames after which the client re-sends the post by itself.
RETRIED_ERRORS = ("storage_unavailable", "rate_limited")


class ClientError(RuntimeError):
    """The service refused something; ``code`` is the error frame's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass
class ClientStats:
    connects: int = 0
    reconnects: int = 0
    duplicates_dropped: int = 0
    reconnect_times: list[float] = field(default_factory=list)


class RoomClient:
    def __init__(
        self,
        base_urls: list[str],
        room: str,
        name: str | None = None,
        *,
        token: str | None = None,
        cursor: str | None = None,
        on_entry: Callable[[dict[str, Any]], None] | None = None,
        on_live: Callable[[dict[str, Any]], None] | None = None,
        reconnect_delay: float = 0.05,
    ) -> None:
        if not base_urls:
            raise ValueError("at least one chat-service address is needed")
        self.base_urls = [u.rstrip("/").replace("http", "ws", 1) for u in base_urls]
        self.room = room
        self.name = name or ""
        self.token = token
        self.cursor = cursor
        self.entries: list[dict[str, Any]] = []
        self.live: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.stats = ClientStats()
        self.on_entry = on_entry
        self.on_live = on_live
        self.replica: str | None = None
        self.expires_at: float | None = None  # of the token the open socket last accepted
        self._reconnect_delay = reconnect_delay
        self._url_index = 0
        self._ws: ClientConnection | None = None
        self._connected = asyncio.Event()
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._fatal: ClientError | None = None
        self._new_entry = asyncio.Condition()

    def _url(self) -> str:
        base = self.base_urls[self._url_index % len(self.base_urls)]
        url = f"{base}/api/v1/rooms/{quote(self.room)}/ws"
        if self.cursor is not None:
            url += f"?cursor={quote(self.cursor)}"
        return url

    def _headers(self) -> dict[str, str]:
        return authorization(self.token) if self.token else {}

    async def start(self, timeout: float = 10.0) -> None:
        self._task = asyncio.create_task(self._run())
        await self.wait_connected(timeout)

    async def wait_connected(self, timeout: float = 10.0) -> None:
        waiter = asyncio.create_task(self._connected.wait())
        tasks: set[asyncio.Future[Any]] = {waiter, self._task} if self._task else {waiter}
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._fatal:
            raise self._fatal
        if not self._connected.is_set():
            raise TimeoutError(f"could not connect to {self.room} within {timeout}s")

    async def _run(self) -> None:
        lost_at: float | None = None
        while not self._closing:
            try:
                async with websockets.connect(
                    self._url(),
                    open_timeout=5,
                    max_size=2**24,
                    additional_headers=self._headers(),
                ) as ws:
                    first = json.loads(await ws.recv())
                    self._handle(first)
                    if first.get("type") != "welcome":  # refused: the close follows
                        await ws.recv()
                        continue
                    self._ws = ws
                    await self._on_open(ws, lost_at)
                    lost_at = None
                    async for raw in ws:
                        self._handle(json.loads(raw))
            except websockets.exceptions.ConnectionClosed as exc:
                refusal = exc.rcvd.code if exc.rcvd else None
                if refusal in FATAL_CLOSES:  # the service said no: retrying won't help
                    reason = exc.rcvd.reason if exc.rcvd else ""
                    self._fatal = ClientError("refused", f"{refusal} {reason}")
                    return
                log.debug("client_disconnected", error=repr(exc))
            except (OSError, websockets.exceptions.WebSocketException, TimeoutError) as exc:
                log.debug("client_disconnected", error=repr(exc))
            finally:
                self._ws = None
                if self._connected.is_set():
                    lost_at = time.monotonic()
                self._connected.clear()
            if self._closing:
                return
            self._url_index += 1  # fail over to the next address
            await asyncio.sleep(self._reconnect_delay)

    async def _on_open(self, ws: ClientConnection, lost_at: float | None) -> None:
        self.stats.connects += 1
        if lost_at is not None:
            self.stats.reconnects += 1
            self.stats.reconnect_times.append(time.monotonic() - lost_at)
        self._connected.set()
        for fut in list(self._acks.values()):  # re-send what was not acknowledged
            if not fut.done():
                frame = getattr(fut, "frame", None)
                if frame is not None:
                    await ws.send(json.dumps(frame))

    async def set_token(self, token: str) -> None:
        """Use ``token`` from now on: for reconnects, and on the open socket at once (an ``auth``
        frame), which the service would otherwise close when the old token expires."""
        self.token = token
        if self._ws is not None:
            with contextlib.suppress(websockets.exceptions.WebSocketException):
                await self._ws.send(json.dumps({"type": "auth", "token": token}))

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "welcome":
            self.replica = frame.get("replica")
        elif kind == "authenticated":
            self.expires_at = frame.get("expires_at")
        elif kind == "entry":
            entry = frame["entry"]
            if self.cursor is not None and not is_after(entry["id"], self.cursor):
                self.stats.duplicates_dropped += 1
                return
            self.cursor = entry["id"]
            self.entries.append(entry)
            if self.on_entry:
                self.on_entry(entry)
            asyncio.get_running_loop().create_task(self._notify())
        elif kind == "live":
            self.live.append(frame["event"])
            if self.on_live:
                self.on_live(frame["event"])
        elif kind == "ack":
            fut = self._acks.get(frame.get("ref") or "")
            if fut and not fut.done():
                fut.set_result(frame)
        elif kind == "error":
            self.errors.append(frame)
            fut = self._acks.get(frame.get("ref") or "")
            code = frame.get("code")
            if fut and not fut.done() and code not in RETRIED_ERRORS:
                fut.set_exception(ClientError(frame["code"], frame["message"]))
            elif fut and not fut.done():  # storage down or over the rate: re-send after a pause
                delay = float(frame.get("retry_after") or 0.2)
                asyncio.get_running_loop().create_task(self._resend_later(frame["ref"], delay))

    async def _notify(self) -> None:
        async with self._new_entry:
            self._new_entry.notify_all()

    async def _resend_later(self, ref: str, delay: float = 0.2) -> None:
        await asyncio.sleep(delay)
        fut = self._acks.get(ref)
        frame = getattr(fut, "frame", None)
        if fut and not fut.done() and frame is not None and self._ws is not None:
            with contextlib.suppress(websockets.exceptions.WebSocketException):
                await self._ws.send(json.dumps(frame))

    async def post(
        self, text: str, msg_id: str | None = None, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Send a message and wait for its acknowledgement (re-sent across reconnects)."""
        msg_id = msg_id or uuid.uuid4().hex
        frame = {"type": "post", "id": msg_id, "text": text}
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        fut.frame = frame  # type: ignore[attr-defined]
        self._acks[msg_id] = fut
        try:
            if self._ws is not None:
                with contextlib.suppress(websockets.exceptions.WebSocketException):
                    await self._ws.send(json.dumps(frame))
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._acks.pop(msg_id, None)

    async def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 10.0
    ) -> None:
        async def _wait() -> None:
            async with self._new_entry:
                await self._new_entry.wait_for(lambda: predicate(self.entries))

        await asyncio.wait_for(_wait(), timeout)

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        await stop_task(self._task)
