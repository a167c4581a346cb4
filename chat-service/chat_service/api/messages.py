"""Posting to a room and reading its history by cursor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from chat_service.posting import post_human
from llmchat.models import ClientMessageId, Entry, UnicodeText

from .access import check_cursor, check_room_name, member_room
from .deps import IdentityDep, RoomPath, StateDep, require_user
from .errors import ApiError, responses

router = APIRouter(prefix="/rooms/{room}/messages", tags=["messages"])


class PostMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: ClientMessageId | None = Field(
        default=None, description="Client-made message id; re-posting the same id stores it once."
    )
    author: str | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        description="Optional: must be the token's own name (you cannot post as someone else).",
    )
    text: UnicodeText = Field(description="Message text (UTF-8; size limited, default 8 KiB).")


class PostResult(BaseModel):
    entry: Entry
    duplicate: bool = Field(description="True when this id was already stored.")


class History(BaseModel):
    entries: list[Entry]
    next_cursor: str = Field(description="Pass as `after` to read the following page.")
    more: bool = Field(description="True when more entries follow this page.")


@router.post(
    "",
    response_model=PostResult,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": PostResult, "description": "Duplicate id: the stored entry"},
        **responses(401, 403, 404, 409, 413, 422, 429, 503),
    },
    summary="Post a message as yourself (stored before it is acknowledged)",
    description="The same `id` re-posted by its author is stored once (200, `duplicate`); an "
    "`id` another author already used is a conflict (409 `id_conflict`).",
)
async def post_message(
    room: RoomPath,
    body: PostMessage,
    state: StateDep,
    identity: IdentityDep,
    response: Response,
) -> PostResult:
    user = require_user(identity)
    if body.author is not None and body.author.casefold() != user.casefold():
        raise ApiError(403, "forbidden", f"you are {user!r}; you cannot post as {body.author!r}")
    found, member = await member_room(state, room, identity)
    assert member is not None  # a user (not the admin) who belongs to the room
    # refusals are raised as typed errors and answered by the handlers in errors.py
    result = await post_human(state, found, member.name, body.text, body.id, "rest")
    if result.duplicate:
        response.status_code = status.HTTP_200_OK
    return PostResult(entry=result.entry, duplicate=result.duplicate)


@router.get(
    "",
    response_model=History,
    responses=responses(400, 401, 403, 404, 503),
    summary="Read history (members only)",
)
async def read_history(
    room: RoomPath,
    state: StateDep,
    identity: IdentityDep,
    after: Annotated[
        str | None, Query(description="Cursor: return entries after this stream id.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> History:
    check_room_name(room)
    if after is not None:
        check_cursor(after)
    limit = min(limit, state.settings.page_limit)
    await member_room(state, room, identity)
    if after is None:
        entries = await state.timeline.tail(room, limit)
        more = bool(entries) and await state.timeline.length(room) > len(entries)
    else:
        entries = await state.timeline.read_after(room, after, limit + 1)
        more = len(entries) > limit
        entries = entries[:limit]
    next_cursor = entries[-1].id if entries else (after or "0-0")
    return History(entries=entries, next_cursor=next_cursor, more=more)
