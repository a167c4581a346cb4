"""One open room WebSocket: what it sends (backlog, then live entries and events, and replies)
and what it reads (posts, pings, fresh tokens), while its token and its user stay valid.

A post goes through ``chat_service.posting`` like a REST post; its refusals come back as
typed errors, answered here as error frames. The frames are built by ``chat_service.protocol``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from chat_service import metrics
from chat_service.hub import Subscriber
from chat_service.inbound import FrameBudget
from chat_service.posting import MessageTextError, post_human, room_max_bytes
from chat_service.protocol import (
    CLOSE_FORBIDDEN,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHENTICATED,
    AuthFrame,
    FrameError,
    PingFrame,
    PostFrame,
    WireEntry,
    ack_frame,
    authenticated_frame,
    close_reason,
    encode,
    entry_frame,
    error_frame,
    parse_client_frame,
    pong_frame,
    welcome_frame,
)
from chat_service.state import ServiceState
from llmchat.auth import Identity
from llmchat.durability import NotReplicatedError
from llmchat.ids import new_msg_id, parse_stream_id
from llmchat.logs import get_logger
from llmchat.models import Entry, Member, Room
from llmchat.ratelimit import RateLimitedError
from llmchat.redis_conn import UNAVAILABLE_ERRORS
from llmchat.tasks import stop_tasks
from llmchat.timeline import MessageIdConflictError, RoomNotFoundError

from .access import authenticate, standing_problem
from .errors import ApiError

log = get_logger(__name__)

#: How long closing may wait for a client that does not read (then the socket is left to
#: uvicorn, which cuts a peer that stops answering pings).
CLOSE_WAIT_S = 5.0


async def close_socket(ws: WebSocket, code: int, reason: str) -> None:
    """Close the socket; give up after ``CLOSE_WAIT_S`` if the client does not read."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code=code, reason=close_reason(reason)), CLOSE_WAIT_S)


async def refuse(ws: WebSocket, code: str, message: str, close_code: int) -> None:
    """An error frame, then the close."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.send_text(encode(error_frame(code, message))), CLOSE_WAIT_S)
    await close_socket(ws, close_code, message)


class SessionEndError(Exception):
    """The session must end: the error frame's code and message, and the close code."""

    def __init__(self, close_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.code = code
        self.message = message


class Session:
    def __init__(  # noqa: PLR0917 - the session's parts, each needed
        self,
        ws: WebSocket,
        state: ServiceState,
        room: Room,
        member: Member,
        sub: Subscriber,
        identity: Identity,
    ) -> None:
        self.ws = ws
        self.state = state
        self.room_config = room
        self.room = room.name
        self.max_bytes = room_max_bytes(state, room)
        self.member = member
        self.sub = sub
        self.identity = identity  # replaced by a fresh token sent in band
        self._reauthed = asyncio.Event()
        self.last_key: tuple[int, int] | None = None  # the stream id of the last entry sent

    async def run(self, cursor: str | None) -> None:
        tasks = [
            asyncio.create_task(self._send_loop(cursor), name="ws-send"),
            asyncio.create_task(self._receive_loop(), name="ws-receive"),
            asyncio.create_task(self.sub.overflowed.wait()),
            asyncio.create_task(self._watch_auth(), name="ws-auth"),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await stop_tasks(tasks)
        if tasks[2] in done:
            behind = "too far behind; reconnect with your cursor"
            await close_socket(self.ws, CLOSE_TRY_AGAIN, behind)
        for task in done:
            exc = task.exception() if not task.cancelled() else None
            if isinstance(exc, SessionEndError):
                metrics.AUTH_FAILURES.labels(exc.code).inc()
                await refuse(self.ws, exc.code, exc.message, exc.close_code)
            elif exc is not None and not isinstance(exc, WebSocketDisconnect | RuntimeError):
                log.error("ws_session_error", room=self.room, error=repr(exc))

    def _reply(self, frame: dict[str, Any]) -> None:
        """A reply to the client's own frame, sent in turn with the room's entries."""
        self.sub.push(("frame", frame))

    # -- who is on the socket ----------------------------------------------------------------

    async def _watch_auth(self) -> None:
        """End the session when its token expires (unless a fresh one came in band), and when
        its user signed out, was deleted or left the room (checked every
        ``ws_auth_recheck_s``; posts check at once). Raises ``SessionEndError``."""
        recheck = self.state.settings.ws_auth_recheck_s
        while True:
            expires = self.identity.expires_at or math.inf
            left = expires - time.time()
            if left <= 0:
                raise SessionEndError(
                    CLOSE_UNAUTHENTICATED,
                    "token_expired",
                    "the token has expired; reconnect with a fresh one (send one in an 'auth' "
                    "frame before it expires to stay connected)",
                )
            self._reauthed.clear()
            try:
                await asyncio.wait_for(self._reauthed.wait(), min(left, recheck))
                continue  # a fresh token: its own expiry from now on
            except TimeoutError:
                pass
            if time.time() < (self.identity.expires_at or math.inf):
                with contextlib.suppress(*UNAVAILABLE_ERRORS):
                    await self._check_standing()

    async def _check_standing(self) -> None:
        """Raise ``SessionEndError`` if the user signed out or is gone, or left the room."""
        user = self.member.name
        standing, member = await asyncio.gather(
            self.state.users.standing(user), self.state.rooms.member(self.room, user)
        )
        problem = standing_problem(self.identity, standing)
        if problem:
            raise SessionEndError(CLOSE_UNAUTHENTICATED, "token_revoked", problem)
        if member is None:
            raise SessionEndError(
                CLOSE_FORBIDDEN, "not_a_member", f"{user!r} is no longer a member of {self.room!r}"
            )

    async def _reauthenticate(self, frame: AuthFrame) -> None:
        try:
            fresh = await authenticate(self.state, frame.token)
        except ApiError as exc:
            metrics.AUTH_FAILURES.labels(exc.code).inc()
            self._reply(error_frame(exc.code, exc.message))
            return
        same = fresh.user is not None and fresh.user.casefold() == self.member.name.casefold()
        if not same or fresh.uid != self.identity.uid:
            owner = self.member.name
            message = f"this socket is {owner!r}'s: a fresh token must name them"
            self._reply(error_frame("forbidden", message))
            return
        self.identity = fresh
        self._reauthed.set()
        metrics.AUTH.labels("in_band").inc()
        self._reply(authenticated_frame(fresh.user, fresh.expires_at))

    # -- what the socket sends ---------------------------------------------------------------

    async def _send_stored(self, entry: Entry) -> None:
        """An entry of the backlog (read from the timeline, not live)."""
        key = parse_stream_id(entry.id)
        if self.last_key is not None and key <= self.last_key:
            return
        await self.ws.send_text(encode(entry_frame(entry)))
        self.last_key = key
        metrics.DELIVERED.inc()

    async def _send_wire(self, wire: WireEntry) -> None:
        """A live entry, already encoded by the room's reader."""
        if self.last_key is not None and wire.key <= self.last_key:
            return
        await self.ws.send_text(wire.text)
        self.last_key = wire.key
        metrics.DELIVERED.inc()
        metrics.MESSAGE_LATENCY.observe(max(0.0, time.time() - wire.ts))

    async def _send_backlog(self, cursor: str | None) -> None:
        tl = self.state.timeline
        if cursor is None:
            for entry in await tl.tail(self.room, self.state.settings.history_on_join):
                await self._send_stored(entry)
            return
        after = cursor
        self.last_key = parse_stream_id(cursor)
        page = self.state.settings.page_limit
        while True:
            entries = await tl.read_after(self.room, after, page)
            for entry in entries:
                await self._send_stored(entry)
            if len(entries) < page:
                return
            after = entries[-1].id

    async def _send_loop(self, cursor: str | None) -> None:
        last_id = await self.state.timeline.last_id(self.room)
        welcome = welcome_frame(self.room, self.member, self.state.replica, last_id)
        await self.ws.send_text(encode(welcome))
        await self._send_backlog(cursor)
        while True:
            item = await self.sub.queue.get()
            if item[0] == "wire":
                await self._send_wire(item[1])
            elif item[0] == "live":
                await self.ws.send_text(item[1])
                metrics.LIVE_EVENTS.inc()
            else:
                await self.ws.send_text(encode(item[1]))

    # -- what the socket reads ---------------------------------------------------------------

    async def _receive_loop(self) -> None:
        settings = self.state.settings
        budget = FrameBudget(settings.ws_frames_per_second, settings.ws_frame_burst)
        while True:
            await budget.take()  # over the budget the client is not read: TCP pushes back
            msg = await self.ws.receive()
            try:
                await self._handle_message(msg)
            except (WebSocketDisconnect, SessionEndError):
                raise
            except Exception as exc:  # a bug must not cost the client its connection
                log.exception("ws_frame_error", room=self.room, error=repr(exc))
                self._reply(error_frame("internal_error", "the frame could not be handled"))

    async def _handle_message(self, msg: Any) -> None:
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(int(msg.get("code") or 1000))
        raw = msg.get("text")
        if raw is None:
            try:
                raw = bytes(msg.get("bytes") or b"").decode("utf-8")
            except UnicodeDecodeError:
                self._reply(error_frame("invalid_frame", "frames must be UTF-8 JSON text"))
                return
        try:
            frame = parse_client_frame(raw)
        except FrameError as exc:
            metrics.MESSAGES.labels("ws", "rejected").inc()
            self._reply(error_frame(exc.code, exc.message, exc.ref))
            return
        if isinstance(frame, PingFrame):
            self._reply(pong_frame())
        elif isinstance(frame, AuthFrame):
            await self._reauthenticate(frame)
        else:
            await self._post(frame)

    async def _post(self, frame: PostFrame) -> None:
        """Store the post (``chat_service.posting``) and reply: an ack, or why it was not."""
        if time.time() >= (self.identity.expires_at or math.inf):
            raise SessionEndError(CLOSE_UNAUTHENTICATED, "token_expired", "the token has expired")
        msg_id = frame.id or new_msg_id()
        try:
            # the author's standing is checked at once, next to the rate limits (signed out,
            # deleted or removed: not one more post)
            result = await post_human(
                self.state, self.room_config, self.member.name, frame.text, msg_id, "ws",
                alongside=self._check_standing,
            )  # fmt: skip
        except MessageTextError as exc:
            self._reply(error_frame(exc.code, str(exc), frame.id))
        except RateLimitedError as exc:
            metrics.RATE_LIMITED.labels(exc.scope).inc()
            self._reply(error_frame("rate_limited", str(exc), msg_id, exc.retry_after))
        except RoomNotFoundError:
            self._reply(error_frame("room_not_found", "the room is gone", msg_id))
        except MessageIdConflictError as exc:
            metrics.MESSAGES.labels("ws", "rejected").inc()
            self._reply(error_frame("id_conflict", str(exc), msg_id))
        except NotReplicatedError as exc:  # on the master only: not acknowledged
            metrics.MESSAGES.labels("ws", "unavailable").inc()
            self._reply(error_frame("storage_unavailable", str(exc), msg_id))
        except UNAVAILABLE_ERRORS:
            metrics.MESSAGES.labels("ws", "unavailable").inc()
            self._reply(
                error_frame(
                    "storage_unavailable",
                    "storage is unreachable; the message was not stored; retry it",
                    msg_id,
                )
            )
        else:
            self._reply(ack_frame(msg_id, result.entry.id, result.duplicate))
