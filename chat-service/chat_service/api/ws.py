"""The room WebSocket's door: who may open it, in which room; the open session is in
``ws_session``. Every timeline entry in order, resumable from a cursor.

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
import uuid

from fastapi import APIRouter, WebSocket

from chat_service import metrics
from chat_service.protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_CONFLICT,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_TOO_MANY,
    CLOSE_TRY_AGAIN,
    CLOSE_UNAUTHENTICATED,
)
from chat_service.state import ServiceState
from llmchat.auth import WS_PROTOCOL, Identity, bearer, token_from_subprotocols
from llmchat.redis_conn import UNAVAILABLE_ERRORS
from llmchat.rooms import NameTakenError
from llmchat.tasks import stop_task

from .access import SIGN_IN_HINT, authenticate, check_cursor, check_room_name, visible_room
from .errors import ApiError
from .ws_session import Session, refuse

router = APIRouter()


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
    identity = await _identify(ws, state, room, token, name)
    if identity is None or identity.user is None:
        return
    if cursor is not None:
        try:
            check_cursor(cursor)
        except ApiError as exc:
            await refuse(ws, exc.code, exc.message, CLOSE_BAD_REQUEST)
            return
    await _enter(ws, state, room, identity, identity.user, cursor)


async def _identify(
    ws: WebSocket, state: ServiceState, room: str, token: str | None, name: str | None
) -> Identity | None:
    """Who opens the socket (a user, and the one ``name`` says if given); None once refused."""
    try:
        check_room_name(room)
    except ApiError as exc:
        await refuse(ws, exc.code, exc.message, CLOSE_NOT_FOUND)
        return None
    if token is None:
        metrics.AUTH_FAILURES.labels("unauthenticated").inc()
        await refuse(ws, "unauthenticated", SIGN_IN_HINT, CLOSE_UNAUTHENTICATED)
        return None
    try:
        identity = await authenticate(state, token)
    except ApiError as exc:
        metrics.AUTH_FAILURES.labels(exc.code).inc()
        await refuse(ws, exc.code, exc.message, CLOSE_UNAUTHENTICATED)
        return None
    except UNAVAILABLE_ERRORS:
        await refuse(ws, "storage_unavailable", "storage is unreachable; retry", CLOSE_TRY_AGAIN)
        return None
    user = identity.user
    if user is None:
        await refuse(ws, "user_required", "connect with a user token", CLOSE_FORBIDDEN)
        return None
    if name is not None and name.casefold() != user.casefold():
        await refuse(
            ws, "forbidden", f"you are {user!r}; you cannot connect as {name!r}", CLOSE_FORBIDDEN
        )
        return None
    return identity


async def _enter(  # noqa: PLR0917 - the socket, and who enters which room from where
    ws: WebSocket,
    state: ServiceState,
    room: str,
    identity: Identity,
    user: str,
    cursor: str | None,
) -> None:
    """Join the room with a connection slot and run the session until it ends."""
    conn_id = uuid.uuid4().hex
    slot = False
    try:
        try:
            found = await visible_room(state, room, identity)
        except ApiError as exc:
            await refuse(ws, exc.code, exc.message, CLOSE_NOT_FOUND)
            return
        limit = state.settings.max_connections_per_user
        slot = await state.slots.acquire(user, conn_id, limit)
        if not slot:
            metrics.RATE_LIMITED.labels("connections").inc()
            await refuse(
                ws,
                "too_many_connections",
                f"{user!r} already has {limit} open connections; close one and retry",
                CLOSE_TOO_MANY,
            )
            return
        member, _ = await state.rooms.join(found, user)  # a valid name: the token said so
        sub = await state.fanout.subscribe(room)
    except NameTakenError as exc:
        await _release(state, user, conn_id, slot)
        await refuse(ws, "name_taken", str(exc), CLOSE_CONFLICT)
        return
    except UNAVAILABLE_ERRORS:
        await _release(state, user, conn_id, slot)
        await refuse(ws, "storage_unavailable", "storage is unreachable; retry", CLOSE_TRY_AGAIN)
        return

    metrics.WS_CONNECTIONS.inc()
    session = Session(ws, state, found, member, sub, identity)
    keeper = asyncio.create_task(_keep_slot(state, user, conn_id), name="slot-keeper")
    try:
        await session.run(cursor)
    finally:
        # stopped for certain before the slot is released: a keeper that lost its cancel
        # would hold the slot for ever (see llmchat.tasks)
        await stop_task(keeper)
        metrics.WS_CONNECTIONS.dec()
        await state.fanout.unsubscribe(sub)
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
