"""The WebSocket protocol: frames a client sends and frames the service sends back.

Client -> service::

    {"type": "post", "id": "<message id, optional>", "text": "hello"}
    {"type": "ping"}
    {"type": "auth", "token": "<a fresh token of the same user>"}

Service -> client::

    {"type": "welcome", "room": ..., "member": ..., "replica": ..., "cursor": ...}
    {"type": "entry", "entry": {...timeline entry, "id" is the cursor...}}
    {"type": "live", "event": {...ephemeral event such as a token delta...}}
    {"type": "ack", "ref": "<message id>", "cursor": "<stream id>", "duplicate": false}
    {"type": "error", "code": "...", "message": "...", "ref": "<message id or null>"}
    {"type": "pong"}
    {"type": "authenticated", "user": ..., "expires_at": ...}

An ``error`` frame refusing a post over a rate limit also carries ``retry_after`` (seconds).
Every frame is built here and encoded by ``encode`` (compact JSON); a live timeline entry's
frame is encoded once per replica (``wire_entry``), a live event's once per publication.

Nothing a client sends is echoed back whole: error messages name the problem in at most
``MAX_ERROR_CHARS`` characters and a ``ref`` is echoed only when it is a valid message id, so a
reply costs the service a bounded amount of memory whatever the frame held.

The socket closes with: 4400 bad request, 4404 unknown room (or one you may not see), 4409 name
taken, 4401 no valid token, 4403 not allowed, 4429 too many connections, 1013 try again later,
1009 frame too large; the reason is at most ``MAX_CLOSE_REASON_BYTES`` bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from llmchat.ids import is_client_msg_id
from llmchat.jsonfmt import compact_json
from llmchat.models import ClientMessageId, Entry, Member, UnicodeText

#: The longest error message a reply carries (what a client sent is quoted within it, cut).
MAX_ERROR_CHARS = 300
#: The longest quotation of a client's value inside an error message.
MAX_QUOTE_CHARS = 40

CLOSE_BAD_REQUEST = 4400
CLOSE_NOT_FOUND = 4404
CLOSE_CONFLICT = 4409
CLOSE_TRY_AGAIN = 1013
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_MANY = 4429
#: A close frame's reason is at most 123 bytes of UTF-8 (RFC 6455 5.5: 125 minus the code).
MAX_CLOSE_REASON_BYTES = 123


class PostFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["post"]
    id: ClientMessageId | None = Field(
        default=None, description="Client-made id for idempotent retry."
    )
    text: UnicodeText


class PingFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["ping"]


class AuthFrame(BaseModel):
    """A fresh token for the open socket: re-authentication in band, before the old expires."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=4096)


Frame = PostFrame | PingFrame | AuthFrame
ClientFrame = Annotated[Frame, Field(discriminator="type")]
_CLIENT_FRAME: TypeAdapter[Frame] = TypeAdapter(ClientFrame)
CLIENT_TYPES = ("post", "ping", "auth")


class FrameError(ValueError):
    """A client frame that cannot be accepted; ``code`` names the problem for machines."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        message = bounded(message)
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


def bounded(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters (an ellipsis marks the cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote(value: object) -> str:
    """A short ``repr`` of something a client sent, for an error message."""
    return bounded(repr(value), MAX_QUOTE_CHARS)


def parse_client_frame(raw: str) -> Frame:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        # ValueError, not only JSONDecodeError: an integer literal over Python's 4300-digit limit
        # raises a plain ValueError, and RecursionError comes from very deep nesting
        raise FrameError("invalid_json", f"frame is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise FrameError("invalid_frame", "frame must be a JSON object with a 'type' field")
    kind = data.get("type")
    if kind not in CLIENT_TYPES:
        raise FrameError(
            "unknown_type",
            f"unknown frame type {quote(kind)}; expected one of: {', '.join(CLIENT_TYPES)}",
        )
    ref = data.get("id")
    ref = ref if isinstance(ref, str) and is_client_msg_id(ref) else None
    try:
        return _CLIENT_FRAME.validate_python(data)
    except ValidationError as exc:
        raise FrameError("invalid_frame", describe_validation_error(exc), ref) from exc


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        # a location may be a field name the client made up: quoted short, like any value
        loc = ".".join(str(p) if isinstance(p, int) else bounded(str(p), 40) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return bounded("; ".join(parts))


def close_reason(text: str) -> str:
    """``text`` cut to a valid close reason: at most 123 bytes, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return text
    return data[: MAX_CLOSE_REASON_BYTES - 3].decode("utf-8", errors="ignore") + "…"


# -- what the service sends ------------------------------------------------------------------


def encode(frame: dict[str, Any]) -> str:
    """A frame as the socket sends it: compact JSON (what Starlette's ``send_json`` writes)."""
    return compact_json(frame)


def welcome_frame(room: str, member: Member, replica: str, cursor: str) -> dict[str, Any]:
    return {
        "type": "welcome",
        "room": room,
        "member": member.model_dump(mode="json"),
        "replica": replica,
        "cursor": cursor,
    }


def entry_frame(entry: Entry) -> dict[str, Any]:
    return {"type": "entry", "entry": entry.model_dump(mode="json")}


@dataclass(frozen=True, slots=True)
class WireEntry:
    """A live timeline entry, its ``entry`` frame encoded once per replica (not per client)."""

    id: str
    key: tuple[int, int]  # the id parsed once, so each client compares tuples, not strings
    ts: float
    text: str


def wire_entry(entry: Entry, key: tuple[int, int]) -> WireEntry:
    """``entry``'s frame, encoded once for every client of the room (``key``: its parsed id)."""
    return WireEntry(entry.id, key, entry.ts, encode(entry_frame(entry)))


def live_frame(event: dict[str, Any]) -> dict[str, Any]:
    return {"type": "live", "event": event}


def ack_frame(ref: str, cursor: str, duplicate: bool) -> dict[str, Any]:
    return {"type": "ack", "ref": ref, "cursor": cursor, "duplicate": duplicate}


def error_frame(
    code: str, message: str, ref: str | None = None, retry_after: float | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": bounded(message), "ref": ref}
    if retry_after is not None:
        frame["retry_after"] = round(retry_after, 3)
    return frame


def pong_frame() -> dict[str, Any]:
    return {"type": "pong"}


def authenticated_frame(user: str | None, expires_at: float | None) -> dict[str, Any]:
    return {"type": "authenticated", "user": user, "expires_at": expires_at}
