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

Nothing a client sends is echoed back whole: error messages name the problem in at most
``MAX_ERROR_CHARS`` characters and a ``ref`` is echoed only when it is a valid message id, so a
reply costs the service a bounded amount of memory whatever the frame held.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from llmchat.ids import is_client_msg_id
from llmchat.models import ClientMessageId, UnicodeText

#: The longest error message a reply carries (what a client sent is quoted within it, cut).
MAX_ERROR_CHARS = 300
#: The longest quotation of a client's value inside an error message.
MAX_QUOTE_CHARS = 40


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


def error_frame(code: str, message: str, ref: str | None = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": bounded(message), "ref": ref}
