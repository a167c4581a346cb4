"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from chat_service.state import ServiceState
from llmchat.models import ROOM_NAME_RE

from .errors import ApiError


def get_state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


StateDep = Annotated[ServiceState, Depends(get_state)]
RoomPath = Annotated[str, Path(description="Room name.", max_length=63)]


def check_room_name(room: str) -> str:
    if not ROOM_NAME_RE.match(room):
        raise ApiError(404, "room_not_found", f"room {room!r} does not exist (not a valid name)")
    return room


def text_size_error(text: str, limit: int) -> str | None:
    """A message naming the problem with a message text, or None when it is acceptable."""
    if not text.strip():
        return "message text is empty"
    size = len(text.encode("utf-8"))
    if size > limit:
        return f"message text is {size} bytes; the limit is {limit} bytes"
    return None
