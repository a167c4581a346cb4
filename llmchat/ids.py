"""Stream IDs (the room cursor) and message ids."""

from __future__ import annotations

import re
import uuid

# ``\Z``, not ``$``: ``$`` also matches before a final newline ("0-0\n" is not an id)
_STREAM_ID = re.compile(r"\A(\d{1,20})-(\d{1,20})\Z")
_MSG_ID = re.compile(r"\A[A-Za-z0-9_.:-]{1,64}\Z")
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


def validate_msg_id(value: str) -> str:
    if not _MSG_ID.match(value):
        raise ValueError(
            "invalid message id: use 1-64 characters from letters, digits, '_', '.', ':' and '-'"
        )
    return value


def new_msg_id() -> str:
    """A server-made message id (clients usually make their own, for idempotent retries)."""
    return uuid.uuid4().hex
