"""Redis key names, in one place.

Every key of a room carries the room name in a hash tag (``{room}``) so that a room's keys land
on one slot if Redis is ever clustered, which the Lua scripts that touch several keys need.
"""

PREFIX = "llmchat"


def _users_key(name: str, cluster: bool) -> str:
    """On a Redis Cluster the registry of user names (three hashes a script reads together)
    needs a hash tag of its own; on one Redis the names stay as they always were, so existing
    data is found."""
    return f"{PREFIX}:{{users}}:{name}" if cluster else f"{PREFIX}:{name}"


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
    return f"{alive_prefix(room)}{model}:{consumer}"


def ratings(room: str) -> str:
    """Hash of model -> rating JSON (Elo, games, wins, losses, ties)."""
    return f"{PREFIX}:room:{{{room}}}:ratings"


def rated_rounds(room: str) -> str:
    """Set of the rounds (cuts) already folded into the room's ratings: each counts once."""
    return f"{PREFIX}:room:{{{room}}}:rated"


def rounds(room: str) -> str:
    """Stream of rounds for the judge: a cut and the models asked (consumer group 'judges')."""
    return f"{PREFIX}:room:{{{room}}}:rounds"


def turns(room: str) -> str:
    """Counter of human turns, for periodic rounds in leader mode."""
    return f"{PREFIX}:room:{{{room}}}:turns"


def round_due(room: str) -> str:
    """Set when the leader changed because it failed: the next human turn is a full round."""
    return f"{PREFIX}:room:{{{room}}}:round-due"


LEADER_QUEUE = "_leader"


def room_lease(room: str) -> str:
    """The room's leadership lease (local mode; on Kubernetes a coordination.k8s.io Lease)."""
    return f"{PREFIX}:room:{{{room}}}:lease"


def leader_lease_name(room: str) -> str:
    """The name of the room's leadership Lease object (Kubernetes), the one naming rule the
    operator (which creates it) and the workers (which campaign for it) share."""
    return f"{room}-leader"


def judge_lease_name(room: str) -> str:
    """The name of the room's judge Lease object (Kubernetes): the active judge holds it."""
    return f"{room}-judge"


def alive_prefix(room: str) -> str:
    return f"{PREFIX}:room:{{{room}}}:alive:"


def rate_bucket(scope: str, ident: str) -> str:
    """A token bucket (hash: tokens, ts) limiting one user, room, address or judge."""
    return f"{PREFIX}:rl:{scope}:{{{ident}}}"


def connections(user: str) -> str:
    """Sorted set of a user's open WebSocket connections, scored by when each lapses."""
    return f"{PREFIX}:conns:{{{user}}}"


def users(cluster: bool = False) -> str:
    """Hash of case-folded user name -> user JSON (registered names, so nobody takes them)."""
    return _users_key("users", cluster)


def user_skeletons(cluster: bool = False) -> str:
    """Hash of a name's confusable skeleton -> the case-folded name that holds it (so no one
    takes a look-alike of a taken name; see llmchat.names)."""
    return _users_key("user-skeletons", cluster)


def user_versions(cluster: bool = False) -> str:
    """Hash of case-folded user name -> token version (a user's tokens name it; signing out
    moves it on)."""
    return _users_key("user-versions", cluster)


def invitations(room: str) -> str:
    """Set of case-folded user names invited to an invitation-only room."""
    return f"{PREFIX}:room:{{{room}}}:invited"


def feed_wake(token: str) -> str:
    """A chat-service replica's wake stream: an entry here ends its blocked timeline read (one
    Redis only; on a cluster the reads are woken by the appends' announcements instead)."""
    return f"{PREFIX}:feedwake:{token}"
