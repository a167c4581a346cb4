"""Redis key names, in one place.

Every key of a room carries the room name in a hash tag (``{room}``) so that a room's keys land
on one slot if Redis is ever clustered, which the Lua scripts that touch several keys need.
"""

PREFIX = "llmchat"


def rooms_index() -> str:
    """Sorted set of room names, scored by creation time."""
    return f"{PREFIX}:rooms"


def room_meta(room: str) -> str:
    """JSON document describing the room (its RoomConfig)."""
    return f"{PREFIX}:room:{{{room}}}:meta"


def timeline(room: str) -> str:
    """The room's stream: its entry IDs are the room's total order and the clients' cursor."""
    return f"{PREFIX}:room:{{{room}}}:timeline"


def message_ids(room: str) -> str:
    """Hash of message id -> stream entry id, which makes appends idempotent."""
    return f"{PREFIX}:room:{{{room}}}:msgids"


def members(room: str) -> str:
    """Hash of lower-cased display name -> member JSON."""
    return f"{PREFIX}:room:{{{room}}}:members"


def live_channel(room: str) -> str:
    """Pub/sub channel for ephemeral events (live token deltas, typing): never stored."""
    return f"{PREFIX}:room:{{{room}}}:live"


def jobs(room: str, model: str) -> str:
    """A model's job queue in a room: a stream with a consumer group shared by its replicas."""
    return f"{PREFIX}:room:{{{room}}}:jobs:{model}"


def answered(room: str) -> str:
    """Hash of model -> the newest cut it has answered (jobs at or before it are covered)."""
    return f"{PREFIX}:room:{{{room}}}:answered"


def model_streak(room: str) -> str:
    """How many model replies in a row the room has seen since the last human message."""
    return f"{PREFIX}:room:{{{room}}}:streak"


def leader(room: str) -> str:
    """The room's current leader as the election publishes it (``{"model":..,"term":..}``)."""
    return f"{PREFIX}:room:{{{room}}}:leader"


def alive(room: str, model: str, consumer: str) -> str:
    """Expiring heartbeat of one replica of a model serving a room (health for elections)."""
    return f"{PREFIX}:room:{{{room}}}:alive:{model}:{consumer}"
