"""The hub: who on this replica listens to which room. A registry only: it reads nothing.

Each client's ``Subscriber`` is its outbox; the hub keeps them by room and hands an item to
every subscriber of a room. What goes into it comes from the broker (``chat_service.broker``,
the Redis reading); ``chat_service.fanout`` ties the two together. (centrifuge's ``hub.go`` is
the model: the hub is only a registry, the broker does the I/O.)
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from chat_service import metrics
from chat_service.protocol import WireEntry

#: What a client's outbox holds: a live timeline entry (its frame encoded once per replica), a
#: live event's encoded frame, or a reply to the client's own frames (encoded when sent).
Item = (
    tuple[Literal["wire"], WireEntry]
    | tuple[Literal["live"], str]
    | tuple[Literal["frame"], dict[str, Any]]
)


class Subscriber:
    """One client's outbox: the room's entries and events, and the replies to its own frames.

    Everything counts against ``limit``, replies too: a client that sends frames without reading
    the answers fills its outbox like one that cannot keep up with the room, and either is
    disconnected (it resumes with its cursor). On overflow the outbox is emptied at once, so a
    client that is cut off holds no memory while its socket closes.
    """

    def __init__(self, room: str, limit: int) -> None:
        self.room = room
        self.limit = limit
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.overflowed = asyncio.Event()

    def push(self, item: Item) -> None:
        if self.overflowed.is_set():
            return
        if self.queue.qsize() >= self.limit:
            self.overflowed.set()
            metrics.SLOW_CLIENTS.inc()
            self.queue = asyncio.Queue()  # drop what it will never read
            return
        self.queue.put_nowait(item)


class Hub:
    """The subscribers of each room on this replica (a room is listed while it has one)."""

    def __init__(self, queue_limit: int) -> None:
        self._queue_limit = queue_limit
        self._rooms: dict[str, set[Subscriber]] = {}

    @property
    def rooms(self) -> list[str]:
        return list(self._rooms)

    def listened(self, room: str) -> bool:
        """Whether any client of this replica is in ``room``."""
        return room in self._rooms

    def add(self, room: str) -> Subscriber:
        """A new subscriber of ``room``, registered."""
        sub = Subscriber(room, self._queue_limit)
        self._rooms.setdefault(room, set()).add(sub)
        return sub

    def remove(self, sub: Subscriber) -> bool:
        """Unregister ``sub``; True when it was its room's last subscriber here."""
        subs = self._rooms.get(sub.room)
        if subs is None:
            return False
        subs.discard(sub)
        if subs:
            return False
        del self._rooms[sub.room]
        return True

    def broadcast(self, room: str, item: Item) -> None:
        """Hand ``item`` to every subscriber of ``room`` (none: nothing happens)."""
        for sub in tuple(self._rooms.get(room, ())):
            sub.push(item)

    def clear(self) -> None:
        self._rooms = {}

    def stats(self) -> dict[str, int]:
        return {
            "rooms": len(self._rooms),
            "subscribers": sum(len(subs) for subs in self._rooms.values()),
        }
