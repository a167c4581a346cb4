"""The election bench's live part: a local system (Redis, chat-service, a worker per model,
the judge) on loopback, its rooms, and the rounds asked in them (a question posted, the
verdict awaited, the leader read)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx

from llmchat.auth import authorization
from llmchat.ids import server_msg_id
from llmchat.ratings import Rating
from llmchat_tools.bench._common import (
    Procs,
    console,
)
from llmchat_tools.bench.answers_ask import sign_up
from llmchat_tools.bench.answers_data import Question
from llmchat_tools.bench.election_replay import JudgedRound, SeedRun, settled
from llmchat_tools.bench.local_system import start_worker
from llmchat_tools.client import RoomClient
from llmchat_tools.local.up import LocalModel

#: How long one round (both answers and the verdict) may take before the suite gives up.
ROUND_TIMEOUT_S = 600.0
#: Time for the electors to act on new ratings (renew every 0.25 s, campaign every 0.1 s).
SETTLE_S = 1.5


class Room:
    """The bench's view of a room: post a question, wait for the verdict, read the leader."""

    def __init__(self, base: str, room: str, admin: str) -> None:
        self.base, self.room, self.admin = base, room, admin
        self.client: RoomClient | None = None

    async def open(self) -> None:
        token, user = sign_up(self.base, self.room, None)
        self.client = RoomClient([self.base], self.room, user, token=token)
        await self.client.start(timeout=30)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    def _get(self, path: str) -> dict[str, Any]:
        r = httpx.get(
            f"{self.base}/api/v1/rooms/{self.room}{path}",
            headers=authorization(self.admin),
            timeout=15,
        )
        r.raise_for_status()
        return dict(r.json())

    def leader(self) -> str | None:
        value = self._get("/leader").get("leader")
        return str(value) if value else None

    def ratings(self) -> dict[str, Rating]:
        board = self._get("/ratings")
        return {
            s["model"]: Rating.model_validate(
                {k: v for k, v in s.items() if k in Rating.model_fields}
            )
            for s in board["standings"]
        }

    async def round(self, question: Question) -> JudgedRound | None:
        """Ask ``question`` (every model answers: an ``all`` room); the round, if judged."""
        assert self.client is not None
        ack = await self.client.post(question.q, timeout=60)
        cut = ack["cursor"]
        verdict_id = server_msg_id("verdict", cut)

        def verdict(es: list[dict[str, Any]]) -> bool:
            return any(e["msg_id"] == verdict_id for e in es)

        await self.client.wait_for(verdict, timeout=ROUND_TIMEOUT_S)
        entry = next(e for e in self.client.entries if e["msg_id"] == verdict_id)
        await asyncio.sleep(SETTLE_S)
        if entry["kind"] != "judge":
            return None
        answers = {
            str(e["author"]): str(e["text"])
            for e in self.client.entries
            if e["kind"] == "model" and (e.get("meta") or {}).get("cut") == cut
        }
        scores = {str(m): float(v) for m, v in (entry.get("meta") or {}).get("scores", {}).items()}
        return JudgedRound(
            q=question.q,
            scores=scores,
            right={m: question.right(a) for m, a in answers.items()},
            answers=answers,
        )


async def live_room(base: str, admin: str, run: SeedRun, questions: Sequence[Question]) -> None:
    """Every question asked once in the live room, in order; the judged rounds and leaders."""
    room = Room(base, run.room, admin)
    await room.open()
    try:
        for q in questions:
            judged = await room.round(q)
            if judged is None:
                run.unjudged += 1
                continue
            run.rounds.append(judged)
            run.leaders.append(room.leader())
            console.print(
                f"  [dim]{run.room} round {len(run.leaders)}: leader {run.leaders[-1]}[/]"
            )
        run.ratings = {m: r.model_dump(exclude={"versus"}) for m, r in room.ratings().items()}
        run.settled = settled(room.ratings(), run.leaders[-1] if run.leaders else None)
    finally:
        await room.close()


def start_system(
    procs: Procs, models: Sequence[tuple[LocalModel, list[str], int]], rooms: list[str]
) -> str:
    """Redis, a chat-service, the workers (model, its rooms, its seed) and the judge."""
    procs.redis()
    _, url = procs.chat_service("chat-service-1")
    for m, serves, seed in models:
        start_worker(procs, m, serves, seed, LLMCHAT_MIN_TENURE_S="0")
    judge = procs.python(
        "judge",
        ["-m", "llmchat", "judge"],
        LLMCHAT_ROOMS=",".join(rooms),
        LLMCHAT_CONSUMER="judge-1",
    )
    time.sleep(0.5)
    judge.check()
    return url


def first_leader(base: str, admin: str, room: str) -> str | None:
    view = Room(base, room, admin)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        leader = view.leader()
        if leader:
            return leader
        time.sleep(0.2)
    return None


async def equal_room(
    base: str, admin: str, run: SeedRun, questions: Sequence[Question], rounds: int
) -> None:
    room = Room(base, run.room, admin)
    await room.open()
    order = list(questions)
    random.Random(99).shuffle(order)
    try:
        i = 0
        while len(run.leaders) < rounds and i < 3 * rounds:
            q = order[i % len(order)]
            i += 1
            judged = await room.round(q)
            if judged is not None:
                run.rounds.append(judged)
                run.leaders.append(room.leader())
                console.print(f"  [dim]twins round {len(run.leaders)}: leader {run.leaders[-1]}[/]")
            else:
                run.unjudged += 1
    finally:
        await room.close()
