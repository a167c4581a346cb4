"""The room's data: rooms, members and timeline entries (pydantic models shared by services)."""

from __future__ import annotations

import re
import time
import unicodedata
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from llmchat.ids import new_msg_id, validate_client_msg_id, validate_msg_id
from llmchat.names import precis_name

# ``\Z``, not ``$``: ``$`` also matches before a final newline
ROOM_NAME_RE = re.compile(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
MODEL_NAME_RE = re.compile(r"\A[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?\Z")
MAX_DISPLAY_NAME = 40
#: Names people may not take: they would impersonate the system or the judge.
RESERVED_NAMES = frozenset({"system", "judge", "all", "everyone", "here", "leader"})


def _room_name(value: str) -> str:
    if not ROOM_NAME_RE.match(value):
        raise ValueError(
            "room name must be 1-63 lower-case letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _display_name(value: str) -> str:
    value = unicodedata.normalize("NFC", value).strip()
    if not value:
        raise ValueError("name must not be empty")
    if len(value) > MAX_DISPLAY_NAME:
        raise ValueError(f"name is {len(value)} characters; the limit is {MAX_DISPLAY_NAME}")
    for ch in value:
        if unicodedata.category(ch)[0] == "C":
            what = unicodedata.name(ch, "a control character")
            raise ValueError(
                f"name must not contain control or invisible characters (U+{ord(ch):04X} {what})"
            )
    if value.startswith("@"):
        raise ValueError("name must not start with '@'")
    if any(ch.isspace() for ch in value):
        raise ValueError("name must not contain spaces (it is used for @mentions)")
    # RFC 8265 (see llmchat.names): no invisible, formatting or symbol characters
    return precis_name(value)


def _encodable(value: str) -> str:
    # JSON may spell a lone surrogate ("\ud800"): json.loads accepts it, UTF-8 cannot store it
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"text has a lone surrogate at character {exc.start}; send valid Unicode"
        ) from exc
    return value


RoomName = Annotated[str, AfterValidator(_room_name)]
#: Text that can be stored: valid Unicode (no lone surrogates).
UnicodeText = Annotated[str, AfterValidator(_encodable)]
DisplayName = Annotated[str, AfterValidator(_display_name)]
#: Any stored message id (a client's or a server-made one).
MessageId = Annotated[str, AfterValidator(validate_msg_id)]
#: An id a client may choose: never one of the server's namespace (see llmchat.ids).
ClientMessageId = Annotated[str, AfterValidator(validate_client_msg_id)]


class RoomMode(StrEnum):
    """Who answers a human message when nobody is @mentioned."""

    LEADER = "leader"
    ALL = "all"


class EntryKind(StrEnum):
    HUMAN = "human"
    MODEL = "model"
    JUDGE = "judge"
    SYSTEM = "system"


class RoomModel(BaseModel):
    """A model that takes part in a room."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The model's name in the room, used for @mentions.")
    system_prompt: UnicodeText = Field(default="", max_length=4000)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not MODEL_NAME_RE.match(value):
            raise ValueError("model name must be 1-40 lower-case letters, digits or '-'")
        return value


class RoomVisibility(StrEnum):
    """Who may join: anyone signed in (``public``) or only invited people (``invite``)."""

    PUBLIC = "public"
    INVITE = "invite"


class RoomLimits(BaseModel):
    """A room's own limits (a ChatRoom's ``rateLimits``); unset fields use the service's."""

    model_config = ConfigDict(extra="forbid")

    messages_per_minute: float | None = Field(
        default=None, ge=0, le=100_000, description="Messages one person may send per minute."
    )
    burst: int | None = Field(
        default=None, ge=1, le=10_000, description="Messages one person may send at once."
    )
    max_message_bytes: int | None = Field(
        default=None, ge=64, le=1_048_576, description="Largest message text, in UTF-8 bytes."
    )


class RoomCreate(BaseModel):
    """Body of ``POST /api/v1/rooms``."""

    model_config = ConfigDict(extra="forbid")

    name: RoomName = Field(description="Unique room name (a DNS label, as in a ChatRoom's name).")
    title: UnicodeText = Field(default="", max_length=200, description="Human-readable title.")
    mode: RoomMode = Field(default=RoomMode.LEADER)
    models: list[RoomModel] = Field(default_factory=list, max_length=16)
    round_every: int = Field(
        default=5,
        ge=0,
        le=1000,
        description="In leader mode every Nth human turn asks all models and is judged (0: never).",
    )
    visibility: RoomVisibility = Field(
        default=RoomVisibility.PUBLIC,
        description="public: anyone signed in may join; invite: only invited people may.",
    )
    limits: RoomLimits = Field(default_factory=RoomLimits)

    @field_validator("models")
    @classmethod
    def _unique(cls, value: list[RoomModel]) -> list[RoomModel]:
        names = [m.name for m in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate model names: {', '.join(dupes)}")
        return value


class Room(RoomCreate):
    """A room as stored."""

    created_at: float = Field(description="Creation time, seconds since the epoch.")

    def model_names(self) -> list[str]:
        return [m.name for m in self.models]


class MemberJoin(BaseModel):
    """Body of ``POST /api/v1/rooms/{room}/members``."""

    model_config = ConfigDict(extra="forbid")

    name: DisplayName = Field(description="Display name, unique in the room (case-insensitive).")


class Member(BaseModel):
    name: str
    kind: EntryKind = EntryKind.HUMAN
    joined_at: float


class NewEntry(BaseModel):
    """What a writer appends to a room's timeline."""

    model_config = ConfigDict(extra="forbid")

    msg_id: MessageId = Field(
        default_factory=new_msg_id,
        description="Idempotency key: appending the same id twice stores it once.",
    )
    kind: EntryKind = EntryKind.HUMAN
    author: str
    text: str
    meta: dict[str, Any] = Field(default_factory=dict)
    ts: float = Field(
        default_factory=time.time,
        description="When the service accepted the message (seconds since the epoch).",
    )


class Entry(NewEntry):
    """A stored timeline entry; ``id`` is its stream ID: the room's order and the cursor."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(description="Stream ID: the room's total order and the resume cursor.")
    room: str
