"""People in a room, through the chat-service Service: what the real-node tier measures with.

Each person signs up over REST (as the web page does), joins the room and keeps a WebSocket
open (``llmchat_tools.client.RoomClient``: it resumes with its cursor after a drop and re-sends what
was not acknowledged). The conversation records, on the wall clock (the same clock as Redis'
stream ids on this machine): every post sent and acknowledged, every entry each person
received, and every time a person's connection opened and to which chat-service replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from llmchat_tools.bench.scenarios_measures import Integrity, check_integrity
from llmchat_tools.client import RoomClient
from websockets.asyncio.client import ClientConnection

from llmchat.auth import authorization


class TrackedClient(RoomClient):
    """A RoomClient that notes when (and to which replica) each connection opened."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened: list[tuple[float, str]] = []
        self.received: dict[str, float] = {}
        self.on_entry = self._note

    def _note(self, entry: dict[str, Any]) -> None:
        self.received[str(entry["id"])] = time.time()

    async def _on_open(self, ws: ClientConnection, lost_at: float | None) -> None:
        self.opened.append((time.time(), str(self.replica or "")))
        await super()._on_open(ws, lost_at)

    def replica_at(self, when: float) -> str:
        """The replica this person was connected to at ``when``."""
        on = ""
        for at, replica in self.opened:
            if at <= when:
                on = replica
        return on


@dataclass
class Post:
    msg_id: str
    author: str
    sent_at: float
    acked_at: float | None = None
    entry_id: str | None = None
    error: str = ""


@dataclass
class Conversation:
    base_url: str
    room: str
    people: dict[str, TrackedClient] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    posts: list[Post] = field(default_factory=list)
    start_cursor: dict[str, str | None] = field(default_factory=dict)

    async def sign_up(self, name: str, http: httpx.AsyncClient) -> str:
        """A token for a new name; sign-ups from one address are rate-limited, so a 429 is
        waited out as its Retry-After says (everyone here comes from the node's address)."""
        for _ in range(30):
            r = await http.post(f"{self.base_url}/api/v1/auth/signup", json={"name": name})
            if r.status_code == 429:
                await asyncio.sleep(float(r.headers.get("Retry-After", "2")))
                continue
            r.raise_for_status()
            return str(r.json()["token"])
        raise AssertionError(f"sign-up of {name} stayed rate-limited")

    async def join(
        self, name: str, http: httpx.AsyncClient, token: str | None = None
    ) -> TrackedClient:
        """``name`` (signed up unless ``token`` is given) joins the room and connects."""
        token = token or await self.sign_up(name, http)
        self.tokens[name] = token
        r = await http.post(
            f"{self.base_url}/api/v1/rooms/{self.room}/members", headers=authorization(token)
        )
        assert r.status_code in (200, 201), r.text
        cursor = await self.last_cursor(http, token)
        client = TrackedClient([self.base_url], self.room, name, token=token, cursor=cursor)
        await client.start(timeout=30)
        self.people[name] = client
        self.start_cursor[name] = cursor
        return client

    async def last_cursor(self, http: httpx.AsyncClient, token: str) -> str:
        r = await http.get(
            f"{self.base_url}/api/v1/rooms/{self.room}/messages",
            params={"limit": 1},
            headers=authorization(token),
        )
        r.raise_for_status()
        entries = r.json()["entries"]
        return str(entries[-1]["id"]) if entries else "0-0"

    async def say(self, name: str, text: str, timeout: float = 120.0) -> Post:
        post = Post(uuid.uuid4().hex, name, time.time())
        self.posts.append(post)
        try:
            ack = await self.people[name].post(text, msg_id=post.msg_id, timeout=timeout)
        except Exception as exc:  # recorded: the integrity check reports it
            post.error = repr(exc)
            return post
        post.acked_at = time.time()
        post.entry_id = str(ack.get("cursor") or "")
        return post

    async def flow(
        self, posters: list[str], *, period: float, stop: asyncio.Event, label: str
    ) -> None:
        """Each poster says something every ``period`` seconds until ``stop`` is set."""

        async def one(name: str, offset: float) -> None:
            await asyncio.sleep(offset)
            n = 0
            pending: set[asyncio.Task[Post]] = set()
            while not stop.is_set():
                n += 1
                task = asyncio.create_task(self.say(name, f"{label} {name} #{n}: how are you?"))
                pending.add(task)
                task.add_done_callback(pending.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), period)
            if pending:
                await asyncio.gather(*pending)

        await asyncio.gather(*(one(p, i * period / len(posters)) for i, p in enumerate(posters)))

    async def timeline(self, http: httpx.AsyncClient, after: str = "0-0") -> list[dict[str, Any]]:
        """Every stored entry after ``after``, in order (REST, paged)."""
        token = next(iter(self.tokens.values()))
        out: list[dict[str, Any]] = []
        cursor = after
        while True:
            r = await http.get(
                f"{self.base_url}/api/v1/rooms/{self.room}/messages",
                params={"after": cursor, "limit": 200},
                headers=authorization(token),
            )
            r.raise_for_status()
            body = r.json()
            out.extend(body["entries"])
            if not body.get("more") or not body["entries"]:
                return out
            cursor = body["next_cursor"]

    def common_start(self) -> str:
        """The cursor after which every person was connected."""
        starts = [c for c in self.start_cursor.values() if c]
        return max(starts, key=_key) if starts else "0-0"

    def _after_start(self, ids: list[str]) -> list[str]:
        common = self.common_start()
        return [i for i in ids if _key(i) > _key(common)]

    async def settle(self, http: httpx.AsyncClient, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Wait (bounded) until every person has received every entry stored since they all
        joined; return the stored timeline."""
        deadline = time.monotonic() + timeout
        while True:
            stored = await self.timeline(http, self.common_start())
            ids = set(self._after_start([str(e["id"]) for e in stored]))
            if all(ids <= set(c.received) for c in self.people.values()):
                return stored
            if time.monotonic() > deadline:
                return stored
            await asyncio.sleep(0.5)

    def integrity(self, stored: list[dict[str, Any]], posts: list[Post]) -> Integrity:
        """``posts`` each stored exactly once and acknowledged; every person received the
        stored timeline (since they all joined) exactly once, in order."""
        keep = set(self._after_start([str(e["id"]) for e in stored]))
        return check_integrity(
            sent_ids=[p.msg_id for p in posts],
            acked_ids=[p.msg_id for p in posts if p.acked_at is not None],
            stored=[(str(e["id"]), str(e.get("msg_id", ""))) for e in stored if e["id"] in keep],
            client_sequences={
                name: self._after_start([str(e["id"]) for e in c.entries])
                for name, c in self.people.items()
            },
        )

    async def close(self) -> None:
        for client in self.people.values():
            await client.close()


def _key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
