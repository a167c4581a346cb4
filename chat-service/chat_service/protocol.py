"""The WebSocket protocol: frames a client sends and frames the service sends back.

Client -> service::

    {"type": "post", "id": "<message id, optional>", "text": "hello"}
    {"type": "ping"}

Service -> client::

    {"type": "welcome", "room": ..., "member": ..., "replica": ..., "cursor": ...}
    {"type": "entry", "entry": {...timeline entry, "id" is the cursor...}}
    {"type": "live", "event": {...ephemeral event such as a token delta...}}
    {"type": "ack", "ref": "<message id>", "cursor": "<stream id>", "duplicate": false}
    {"type": "error", "code": "...", "message": "...", "ref": "<message id or null>"}
    {"type": "pong"}
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from llmchat.models import MessageId, UnicodeText


class PostFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["post"]
    id: MessageId | None = Field(default=None, description="Client-made id for idempotent retry.")
    text: UnicodeText


class PingFrame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["ping"]


ClientFrame = Annotated[PostFrame | PingFrame, Field(discriminator="type")]
_CLIENT_FRAME: TypeAdapter[PostFrame | PingFrame] = TypeAdapter(ClientFrame)
CLIENT_TYPES = ("post", "ping")


class FrameError(ValueError):
    """A client frame that cannot be accepted; ``code`` names the problem for machines."""

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


def parse_client_frame(raw: str) -> PostFrame | PingFrame:
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
            f"unknown frame type {kind!r}; expected one of: {', '.join(CLIENT_TYPES)}",
        )
    ref = data.get("id") if isinstance(data.get("id"), str) else None
    try:
        return _CLIENT_FRAME.validate_python(data)
    except ValidationError as exc:
        raise FrameError("invalid_frame", describe_validation_error(exc), ref) from exc


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


def error_frame(code: str, message: str, ref: str | None = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "ref": ref}
