"""The room WebSocket: every timeline entry in order, resumable from a cursor.

``/api/v1/rooms/{room}/ws?cursor=<stream id>``, with the user's token in an
``Authorization: Bearer`` header or, from a browser, as the subprotocol ``bearer.<token>``
offered next to ``llmchat.v1``. Connecting joins a public room (or an invitation-only room the
user was invited to). A client that gives a cursor gets exactly the entries after it, then
live ones; a client that gives none gets the newest ``history_on_join`` entries.
Close codes: 4400 bad request, 4404
unknown room (or one you may not see), 4409 name taken, 4401 no valid token (also when it
expires, or its user signs out or is deleted, while the socket is open: an ``auth`` frame with a
fresh token before the expiry keeps it open), 4403 not allowed (also once removed from the room),
4429 too many connections for this user, 1013 try again later (storage unavailable, or the
client fell too far behind), 1009 frame too large. A post over a rate limit gets an error frame
``rate_limited`` with ``retry_after`` (seconds) and is not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from chat_service import metrics
from chat_service.hub import Subscriber, WireEntry
from chat_service.inbound import FrameBudget
from chat_service.protocol import (
    AuthFrame,
    FrameError,
    PingFrame,
    error_frame,
    parse_client_frame,
)
from chat_service.state import ServiceState
from llmchat.auth import WS_PROTOCOL, Identity, bearer, token_from_subprotocols
from llmchat.ids import parse_stream_id
from llmchat.logs import get_logger
from llmchat.models import Entry, EntryKind, Member, NewEntry, Room
from llmchat.ratelimit import RateLimitedError
from llmchat.redis_conn import UNAVAILABLE_ERRORS
from llmchat.rooms import NameTakenError
from llmchat.tasks import stop_task, stop_tasks
from llmchat.timeline import MessageIdConflictError, RoomNotFoundError

from .deps import (
    SIGN_IN_HINT,
    authenticate,
    check_post_limits,
    check_room_name,
    room_max_bytes,
    standing_problem,
    text_size_error,
    visible_room,
)
from .errors import ApiError

router = APIRouter()
log = get_logger(__name__)

CLOSE_BAD_REQUEST = 4400
CLOSE_NOT_FOUND = 4404
CLOSE_CONFLICT = 4409
CLOSE_TRY_AGAIN = 1013
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_MANY = 4429


#: A close frame's reason is at most 123 bytes of UTF-8 (RFC 6455 5.5: 125 minus the code).
MAX_CLOSE_REASON_BYTES = 123
#: How long closing may wait for a client that does not read (then the socket is left to
#: uvicorn, which cuts a peer that stops answering pings).
CLOSE_WAIT_S = 5.0


def close_reason(text: str) -> str:
    """``text`` cut to a valid close reason: at most 123 bytes, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return text
    return data[: MAX_CLOSE_REASON_BYTES - 3].decode("utf-8", errors="ignore") + "…"


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    """Close the socket; give up after ``CLOSE_WAIT_S`` if the client does not read."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code=code, reason=close_reason(reason)), CLOSE_WAIT_S)


async def _refuse(ws: WebSocket, code: str, message: str, close_code: int) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.send_json(error_frame(code, message)), CLOSE_WAIT_S)
    await _close(ws, close_code, message)


def entry_frame(entry: Entry) -> dict[str, Any]:
    return {"type": "entry", "entry": entry.model_dump(mode="json")}


def _offered_token(ws: WebSocket) -> tuple[str | None, bool]:
    """(token, whether the client offered the ``llmchat.v1`` subprotocol)."""
    offered = list(ws.scope.get("subprotocols") or [])
    token = bearer(ws.headers.get("authorization")) or token_from_subprotocols(offered)
    return token, WS_PROTOCOL in offered


@router.websocket("/rooms/{room}/ws")
async def room_socket(
    ws: WebSocket, room: str, name: str | None = None, cursor: str | None = None
) -> None:
    state: ServiceState = ws.app.state.service
    token, wants_protocol = _offered_token(ws)
    await ws.accept(subprotocol=WS_PROTOCOL if wants_protocol else None)
    try:
        check_room_name(room)
    except ApiError as exc:
        await _refuse(ws, exc.code, exc.message, CLOSE_NOT_FOUND)
        return
    if token is None:
        metrics.AUTH_FAILURES.labels("unauthenticated").inc()
        await _refuse(ws, "unauthenticated", SIGN_IN_HINT, CLOSE_UNAUTHENTICATED)
        return
    try:
        identity = await authenticate(state, token)
    except ApiError as exc:
        metrics.AUTH_FAILURES.labels(exc.code).inc()
        await _refuse(ws, exc.code, exc.message, CLOSE_UNAUTHENTICATED)
        return
    except UNAVAILABLE_ERRORS:
        await _refuse(ws, "storage_unavailable", "storage is unreachable; retry", CLOSE_TRY_AGAIN)
        return
    if identity.user is None:
        await _refuse(ws, "user_required", "connect with a user token", CLOSE_FORBIDDEN)
        return
    user = identity.user
    if name is not None and name.casefold() != user.casefold():
        await _refuse(
            ws, "forbidden", f"you are {user!r}; you cannot connect as {name!r}", CLOSE_FORBIDDEN
        )
        return
    if cursor is not None:
        try:
            parse_stream_id(cursor)
        except ValueError as exc:
            await _refuse(ws, "invalid_cursor", str(exc), CLOSE_BAD_REQUEST)
            return
    conn_id = uuid.uuid4().hex
    slot = False
    try:
        try:
            found = await visible_room(state, room, identity)
        except ApiError as exc:
            await _refuse(ws, exc.code, exc.message, CLOSE_NOT_FOUND)
            return
        limit = state.settings.max_connections_per_user
        slot = await state.slots.acquire(user, conn_id, limit)
        if not slot:
            metrics.RATE_LIMITED.labels("connections").inc()
            await _refuse(
                ws,
                "too_many_connections",
                f"{user!r} already has {limit} open connections; close one and retry",
                CLOSE_TOO_MANY,
            )
            return
        member, _ = await state.rooms.join(found, user)  # a valid name: the token said so
        sub = await state.hub.subscribe(room)
    except NameTakenError as exc:
        await _release(state, user, conn_id, slot)
        await _refuse(ws, "name_taken", str(exc), CLOSE_CONFLICT)
        return
    except UNAVAILABLE_ERRORS:
        await _release(state, user, conn_id, slot)
        await _refuse(ws, "storage_unavailable", "storage is unreachable; retry", CLOSE_TRY_AGAIN)
        return

    metrics.WS_CONNECTIONS.inc()
    session = _Session(ws, state, found, member, sub, identity)
    keeper = asyncio.create_task(_keep_slot(state, user, conn_id), name="slot-keeper")
    try:
        await session.run(cursor)
    finally:
        # stopped for certain before the slot is released: a keeper that lost its cancel
        # would hold the slot for ever (see llmchat.tasks)
        await stop_task(keeper)
        metrics.WS_CONNECTIONS.dec()
        await state.hub.unsubscribe(sub)
        await _release(state, user, conn_id, True)


async def _keep_slot(state: ServiceState, user: str, conn_id: str) -> None:
    """Refresh this connection's slot so it does not lapse while the socket is open."""
    limit = state.settings.max_connections_per_user
    if limit <= 0:
        return
    while True:
        await asyncio.sleep(state.slots.ttl / 3)
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            await state.slots.acquire(user, conn_id, limit)  # a held slot is refreshed


async def _release(state: ServiceState, user: str, conn_id: str, held: bool) -> None:
    if held and state.settings.max_connections_per_user > 0:
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            await state.slots.release(user, conn_id)


class _SessionEndError(Exception):
    """The session must end: the error frame's code and message, and the close code."""

    def __init__(self, close_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.code = code
        self.message = message


class _Session:
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
            await _close(self.ws, CLOSE_TRY_AGAIN, "too far behind; reconnect with your cursor")
        for task in done:
            exc = task.exception() if not task.cancelled() else None
            if isinstance(exc, _SessionEndError):
                metrics.AUTH_FAILURES.labels(exc.code).inc()
                await _refuse(self.ws, exc.code, exc.message, exc.close_code)
            elif exc is not None and not isinstance(exc, WebSocketDisconnect | RuntimeError):
                log.error("ws_session_error", room=self.room, error=repr(exc))

    # -- who is on the socket ----------------------------------------------------------------

    async def _watch_auth(self) -> None:
        """End the session when its token expires (unless a fresh one came in band), and when
        its user signed out, was deleted or left the room (checked every
        ``ws_auth_recheck_s``; posts check at once). Raises ``_SessionEndError``."""
        recheck = self.state.settings.ws_auth_recheck_s
        while True:
            expires = self.identity.expires_at or math.inf
            left = expires - time.time()
            if left <= 0:
                raise _SessionEndError(
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
        """Raise ``_SessionEndError`` if the user signed out or is gone, or left the room."""
        user = self.member.name
        standing, member = await asyncio.gather(
            self.state.users.standing(user), self.state.rooms.member(self.room, user)
        )
        problem = standing_problem(self.identity, standing)
        if problem:
            raise _SessionEndError(CLOSE_UNAUTHENTICATED, "token_revoked", problem)
        if member is None:
            raise _SessionEndError(
                CLOSE_FORBIDDEN, "not_a_member", f"{user!r} is no longer a member of {self.room!r}"
            )

    async def _reauthenticate(self, frame: AuthFrame) -> None:
        try:
            fresh = await authenticate(self.state, frame.token)
        except ApiError as exc:
            metrics.AUTH_FAILURES.labels(exc.code).inc()
            self.sub.push(("frame", error_frame(exc.code, exc.message)))
            return
        same = fresh.user is not None and fresh.user.casefold() == self.member.name.casefold()
        if not same or fresh.uid != self.identity.uid:
            self.sub.push(
                (
                    "frame",
                    error_frame(
                        "forbidden",
                        f"this socket is {self.member.name!r}'s: a fresh token must name them",
                    ),
                )
            )
            return
        self.identity = fresh
        self._reauthed.set()
        metrics.AUTH.labels("in_band").inc()
        self.sub.push(
            ("frame", {"type": "authenticated", "user": fresh.user, "expires_at": fresh.expires_at})
        )

    async def _send_entry(self, entry: Entry, live: bool) -> None:
        key = parse_stream_id(entry.id)
        if self.last_key is not None and key <= self.last_key:
            return
        await self.ws.send_json(entry_frame(entry))
        self.last_key = key
        metrics.DELIVERED.inc()
        if live:
            metrics.MESSAGE_LATENCY.observe(max(0.0, time.time() - entry.ts))

    async def _send_wire(self, wire: WireEntry) -> None:
        """A live entry, already serialised by the room's feed."""
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
                await self._send_entry(entry, live=False)
            return
        after = cursor
        self.last_key = parse_stream_id(cursor)
        page = self.state.settings.page_limit
        while True:
            entries = await tl.read_after(self.room, after, page)
            for entry in entries:
                await self._send_entry(entry, live=False)
            if len(entries) < page:
                return
            after = entries[-1].id

    async def _send_loop(self, cursor: str | None) -> None:
        last_id = await self.state.timeline.last_id(self.room)
        await self.ws.send_json(
            {
                "type": "welcome",
                "room": self.room,
                "member": self.member.model_dump(mode="json"),
                "replica": self.state.replica,
                "cursor": last_id,
            }
        )
        await self._send_backlog(cursor)
        while True:
            kind, payload = await self.sub.queue.get()
            if kind == "wire":
                assert isinstance(payload, WireEntry)
                await self._send_wire(payload)
            elif kind == "entry":
                assert isinstance(payload, Entry)
                await self._send_entry(payload, live=True)
            elif kind == "live":
                assert isinstance(payload, str)
                await self.ws.send_text(payload)
                metrics.LIVE_EVENTS.inc()
            else:
                await self.ws.send_json(payload)

    async def _receive_loop(self) -> None:
        settings = self.state.settings
        budget = FrameBudget(settings.ws_frames_per_second, settings.ws_frame_burst)
        while True:
            await budget.take()  # over the budget the client is not read: TCP pushes back
            msg = await self.ws.receive()
            try:
                await self._handle_message(msg)
            except (WebSocketDisconnect, _SessionEndError):
                raise
            except Exception as exc:  # a bug must not cost the client its connection
                log.exception("ws_frame_error", room=self.room, error=repr(exc))
                self.sub.push(
                    ("frame", error_frame("internal_error", "the frame could not be handled"))
                )

    async def _handle_message(self, msg: Any) -> None:
        if msg["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(int(msg.get("code") or 1000))
        raw = msg.get("text")
        if raw is None:
            try:
                raw = bytes(msg.get("bytes") or b"").decode("utf-8")
            except UnicodeDecodeError:
                self.sub.push(
                    ("frame", error_frame("invalid_frame", "frames must be UTF-8 JSON text"))
                )
                return
        try:
            frame = parse_client_frame(raw)
        except FrameError as exc:
            metrics.MESSAGES.labels("ws", "rejected").inc()
            self.sub.push(("frame", error_frame(exc.code, exc.message, exc.ref)))
            return
        if isinstance(frame, PingFrame):
            self.sub.push(("frame", {"type": "pong"}))
            return
        if isinstance(frame, AuthFrame):
            await self._reauthenticate(frame)
            return
        if time.time() >= (self.identity.expires_at or math.inf):
            raise _SessionEndError(CLOSE_UNAUTHENTICATED, "token_expired", "the token has expired")
        problem = text_size_error(frame.text, self.max_bytes)
        if problem:
            metrics.MESSAGES.labels("ws", "rejected").inc()
            code = "message_too_large" if "limit" in problem else "empty_message"
            self.sub.push(("frame", error_frame(code, problem, frame.id)))
            return
        new = NewEntry(kind=EntryKind.HUMAN, author=self.member.name, text=frame.text)
        if frame.id:
            new.msg_id = frame.id
        # at once: the author's standing (signed out, deleted or removed: not one more post)
        # and the rate limits; storage down: the post below says so
        standing, limits = await asyncio.gather(
            self._check_standing(),
            check_post_limits(self.state, self.room_config, self.member.name),
            return_exceptions=True,
        )
        for outcome in (standing, limits):
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, (RateLimitedError, *UNAVAILABLE_ERRORS)
            ):
                raise outcome
        if isinstance(limits, RateLimitedError):
            metrics.MESSAGES.labels("ws", "rate_limited").inc()
            metrics.RATE_LIMITED.labels(limits.scope).inc()
            refusal = error_frame("rate_limited", str(limits), new.msg_id)
            refusal["retry_after"] = round(limits.retry_after, 3)
            self.sub.push(("frame", refusal))
            return
        try:
            result = (await self.state.router.post(self.room, new)).append
        except RoomNotFoundError:
            self.sub.push(("frame", error_frame("room_not_found", "the room is gone", new.msg_id)))
            return
        except MessageIdConflictError as exc:
            metrics.MESSAGES.labels("ws", "rejected").inc()
            self.sub.push(("frame", error_frame("id_conflict", str(exc), new.msg_id)))
            return
        except UNAVAILABLE_ERRORS:
            metrics.MESSAGES.labels("ws", "unavailable").inc()
            self.sub.push(
                (
                    "frame",
                    error_frame(
                        "storage_unavailable",
                        "storage is unreachable; the message was not stored; retry it",
                        new.msg_id,
                    ),
                )
            )
            return
        metrics.MESSAGES.labels("ws", "duplicate" if result.duplicate else "stored").inc()
        self.sub.push(
            (
                "frame",
                {
                    "type": "ack",
                    "ref": new.msg_id,
                    "cursor": result.entry.id,
                    "duplicate": result.duplicate,
                },
            )
        )
