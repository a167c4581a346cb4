"""Stream IDs (the room cursor) and message ids."""

from __future__ import annotations

import re
import uuid

# ``\Z``, not ``$``: ``$`` also matches before a final newline ("0-0\n" is not an id)
_STREAM_ID = re.compile(r"\A(\d{1,20})-(\d{1,20})\Z")
_MSG_ID = re.compile(r"\A[A-Za-z0-9_.:-]{1,64}\Z")
#: Server-made ids: ``<kind>/<part>[/<part>...]``. A client id cannot contain '/', so no client
#: can take (and so silence) an id the service, a model worker or the judge will write.
_SERVER_ID = re.compile(r"\A[a-z]{1,16}(?:/[A-Za-z0-9_.:-]{1,64}){1,6}\Z")
MAX_SERVER_ID = 200
_U64 = 2**64

#: The cursor before the first entry of any room.
START = "0-0"
#: The largest stream id: nothing can come after it.
MAX_ID = (_U64 - 1, _U64 - 1)


def parse_stream_id(value: str) -> tuple[int, int]:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``; raises ValueError naming the problem."""
    if value == "0":
        return (0, 0)
    m = _STREAM_ID.match(value)
    if not m:
        raise ValueError(f"invalid cursor {value!r}: expected a stream id like '1700000000000-0'")
    ms, seq = int(m.group(1)), int(m.group(2))
    if ms >= _U64 or seq >= _U64:
        raise ValueError(f"invalid cursor {value!r}: each part must be below 2^64")
    return ms, seq


def is_after(a: str, b: str) -> bool:
    """True when stream id ``a`` comes strictly after ``b``."""
    return parse_stream_id(a) > parse_stream_id(b)


def is_client_msg_id(value: str) -> bool:
    return bool(_MSG_ID.match(value))


def is_server_msg_id(value: str) -> bool:
    return len(value) <= MAX_SERVER_ID and bool(_SERVER_ID.match(value))


def validate_client_msg_id(value: str) -> str:
    """An id a client may choose (REST ``id``, a WebSocket post's ``id``)."""
    if not _MSG_ID.match(value):
        raise ValueError(
            "invalid message id: use 1-64 characters from letters, digits, '_', '.', ':' and '-'"
        )
    return value


def validate_msg_id(value: str) -> str:
    """Any stored id: a client's, or one the system made (:func:`server_msg_id`)."""
    if is_server_msg_id(value):
        return value
    return validate_client_msg_id(value)


def server_msg_id(kind: str, *parts: str) -> str:
    """The id of an entry the system writes, e.g. ``server_msg_id("lead", cut)`` ->
    ``lead/1700000000000-0``: in a namespace of its own (clients cannot use '/')."""
    value = "/".join((kind, *parts))
    if not is_server_msg_id(value):
        raise ValueError(f"invalid server message id {value!r}")
    return value


def server_id_kind(value: str) -> str | None:
    """``"lead"`` for ``lead/...``; None for a client's id."""
    return value.split("/", 1)[0] if is_server_msg_id(value) else None


def new_msg_id() -> str:
    """A server-made message id (clients usually make their own, for idempotent retries)."""
    return uuid.uuid4().hex
