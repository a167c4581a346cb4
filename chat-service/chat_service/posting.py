"""A person's post to a room: the one path that REST (``POST .../messages``) and the WebSocket
(a ``post`` frame) both take.

The text is checked against the room's size limit, the post against the person's and the
room's rate limits, then the router stores it and enqueues the models' jobs in one step
(persist before ack). A post that is refused raises a typed error, which each edge translates
into its own answer (an HTTP status, or an error frame):

- ``EmptyMessageError``, ``MessageTooLargeError`` (both ``MessageTextError``): the text;
- ``llmchat.ratelimit.RateLimitedError``: a rate limit (``retry_after`` says when to retry);
- ``llmchat.timeline.RoomNotFoundError``, ``MessageIdConflictError``: the room is gone, or the
  message id is another author's;
- ``llmchat.redis_conn.UNAVAILABLE_ERRORS``: storage is unreachable (nothing was stored).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import ClassVar, Literal

from chat_service import metrics
from chat_service.state import ServiceState
from llmchat.models import EntryKind, NewEntry, Room
from llmchat.ratelimit import RateLimitedError
from llmchat.redis_conn import UNAVAILABLE_ERRORS
from llmchat.rooms import max_message_bytes, user_bucket, user_limit
from llmchat.timeline import AppendResult

Transport = Literal["rest", "ws"]


class MessageTextError(ValueError):
    """A message text that cannot be posted; ``code`` names the problem."""

    code: ClassVar[str]


class EmptyMessageError(MessageTextError):
    code = "empty_message"

    def __init__(self) -> None:
        super().__init__("message text is empty")


class MessageTooLargeError(MessageTextError):
    code = "message_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message text is {size} bytes; the limit is {limit} bytes")
        self.size = size
        self.limit = limit


def check_text(text: str, limit: int) -> None:
    """Raise ``MessageTextError`` unless ``text`` is something to post within ``limit`` bytes."""
    if not text.strip():
        raise EmptyMessageError
    size = len(text.encode("utf-8"))
    if size > limit:
        raise MessageTooLargeError(size, limit)


def room_max_bytes(state: ServiceState, room: Room) -> int:
    return max_message_bytes(room, state.settings.max_message_bytes)


async def check_post_limits(state: ServiceState, room: Room, user: str) -> None:
    """Take one message from the person's and the room's buckets (RateLimitedError if empty)."""
    limit = user_limit(room, state.settings.user_limit)
    await state.limiter.check("user", user_bucket(room, user), limit)
    await state.limiter.check("room", room.name, state.settings.room_limit)


async def post_human(  # noqa: PLR0917 - what a post is, and where it came from
    state: ServiceState,
    room: Room,
    author: str,
    text: str,
    msg_id: str | None,
    transport: Transport,
    alongside: Callable[[], Awaitable[None]] | None = None,
) -> AppendResult:
    """Store ``author``'s message in ``room`` once (by ``msg_id``: a client's, or a new one).

    ``alongside``: a check of the author's own (the WebSocket's standing check) run at the same
    time as the rate limits; what it raises is raised first. Counts the post's outcome in
    ``llmchat_messages_total`` by ``transport`` (stored, duplicate, rejected for its text,
    rate_limited). Raises the errors listed in the module's docstring.
    """
    try:
        check_text(text, room_max_bytes(state, room))
    except MessageTextError:
        metrics.MESSAGES.labels(transport, "rejected").inc()
        raise
    try:
        await _admit(state, room, author, alongside)
    except RateLimitedError:
        metrics.MESSAGES.labels(transport, "rate_limited").inc()
        raise
    new = NewEntry(kind=EntryKind.HUMAN, author=author, text=text)
    if msg_id:
        new.msg_id = msg_id
    result = (await state.router.post(room.name, new)).append
    metrics.MESSAGES.labels(transport, "duplicate" if result.duplicate else "stored").inc()
    return result


async def _admit(
    state: ServiceState, room: Room, author: str, alongside: Callable[[], Awaitable[None]] | None
) -> None:
    """The rate limits, with ``alongside`` at the same time; the first error (in that order:
    ``alongside``, then the limits) is raised, a storage error only when there is no other."""
    if alongside is None:
        await check_post_limits(state, room, author)
        return
    outcomes = await asyncio.gather(
        alongside(), check_post_limits(state, room, author), return_exceptions=True
    )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    for error in errors:
        if not isinstance(error, UNAVAILABLE_ERRORS):
            raise error
    if errors:
        raise errors[0]
