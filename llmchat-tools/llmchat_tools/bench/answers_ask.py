"""Asking the answers bench's questions: through a room as a signed-up person (every compared
model addressed at once, as a round), and to each model's backend directly."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import typer

from llmchat.auth import authorization
from llmchat_tools.bench._common import (
    progress,
)
from llmchat_tools.bench.answers_data import ModelResult, Question, speaks_for_someone_else
from llmchat_tools.client import RoomClient
from llmchat_tools.local.up import (
    LocalModel,
)

DIRECT_SYSTEM = "You are a helpful assistant."
#: How long one answer may take through the room before it counts as missing.
ANSWER_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class Target:
    base_url: str
    room: str
    token: str
    user: str


def parse_room_url(url: str) -> tuple[str, str]:
    """``http://HOST:PORT/rooms/ROOM`` (or ``.../api/v1/rooms/ROOM``, ``#/ROOM``): base, room."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise typer.BadParameter(f"{url!r}: expected http://HOST:PORT/rooms/ROOM")
    base = f"{parts.scheme}://{parts.netloc}"
    path = (parts.fragment or parts.path).strip("/").split("/")
    room = path[-1] if path and path[-1] and path[-1] not in ("rooms", "v1", "api") else "lobby"
    return base, room


def sign_up(base_url: str, room: str, token: str | None) -> tuple[str, str]:
    """A token and name for the bench's person: the given token, or a fresh open sign-up;
    then joins the room."""
    with httpx.Client(base_url=base_url, timeout=15) as http:
        if token is None:
            name = f"bench-{secrets.token_hex(3)}"
            r = http.post("/api/v1/auth/signup", json={"name": name})
            if r.status_code not in {200, 201}:
                raise RuntimeError(
                    f"sign-up at {base_url} refused ({r.status_code}: {r.text[:200]}); pass --token"
                )
            token = str(r.json()["token"])
        me = http.get("/api/v1/auth/me", headers=authorization(token))
        me.raise_for_status()
        name = str(me.json()["user"])
        r = http.post(f"/api/v1/rooms/{room}/members", headers=authorization(token))
        if r.status_code >= 400 and r.status_code != 409:
            raise RuntimeError(f"could not join {room}: {r.status_code} {r.text[:200]}")
        return token, name


def room_models(target: Target) -> list[str]:
    r = httpx.get(
        f"{target.base_url}/api/v1/rooms/{target.room}",
        headers=authorization(target.token),
        timeout=15,
    )
    r.raise_for_status()
    return [str(m["name"]) for m in r.json()["models"]]


async def ask_room(
    target: Target, models: list[LocalModel], questions: list[Question], results: dict[str, Any]
) -> None:
    """Every question through the room, one at a time, addressed to every compared model at
    once (so they answer it from the same cut, as a round), waiting for all their answers."""
    client = RoomClient([target.base_url], target.room, target.user, token=target.token)
    await client.start(timeout=30)
    participants = {target.user, *(m.name for m in models)}
    address = " ".join(f"@{m.name}" for m in models)
    try:
        with progress() as bar:
            task = bar.add_task("through the room", total=len(questions))
            for q in questions:
                t0 = time.monotonic()
                ack = await client.post(f"{address} {q.q}", timeout=60)
                cut = ack["cursor"]
                for m in models:
                    res: ModelResult = results[m.name]
                    res.asked += 1

                    def reply(es: list[dict[str, Any]], c: str = cut, who: str = m.name) -> bool:
                        return any(_answer_of(e, c, who) for e in es)

                    remaining = max(1.0, ANSWER_TIMEOUT_S - (time.monotonic() - t0))
                    try:
                        await client.wait_for(reply, timeout=remaining)
                    except TimeoutError:
                        res.missing += 1
                        res.samples.append({"q": q.q, "room": None, "room_right": False})
                        continue
                    entry = next(e for e in client.entries if _answer_of(e, cut, m.name))
                    text = str(entry["text"]) if entry["kind"] == "model" else ""
                    res.room_seconds.append(float(entry["meta"].get("total_s") or 0.0))
                    right = q.right(text)
                    res.room_right += right
                    if text and speaks_for_someone_else(text, m.name, participants):
                        res.forged += 1
                    meta = entry.get("meta") or {}
                    res.cut_by_hygiene += bool(meta.get("forged_cut"))
                    res.retried += meta.get("retried") == "repeat"
                    res.samples.append({"q": q.q, "room": text, "room_right": right})
                bar.advance(task)
    finally:
        await client.close()


def _answer_of(entry: dict[str, Any], cut: str, model: str) -> bool:
    """The model's answer to the message at ``cut``, or the note that it could not answer."""
    meta = entry.get("meta") or {}
    if meta.get("cut") != cut or meta.get("model") != model:
        return False
    return entry["kind"] in ("model", "system")


async def ask_direct(
    models: list[LocalModel], questions: list[Question], results: dict[str, Any], seed: int
) -> None:
    """Every question to every model's backend directly, with its own chat template."""
    from model_worker.main import backend_options  # noqa: PLC0415
    from model_worker.settings import WorkerSettings  # noqa: PLC0415

    from llmchat.llm.backends import BackendSpec, create_backend  # noqa: PLC0415
    from llmchat.llm.backends.base import ChatMessage  # noqa: PLC0415

    with progress() as bar:
        task = bar.add_task("directly", total=len(questions) * len(models))
        for m in models:
            settings = WorkerSettings(
                rooms=["bench"],
                backend=m.backend,
                backend_model=m.backend_model,
                backend_host=m.host,
                temperature=m.temperature,
                prompt_cache=False,
            )
            backend = create_backend(
                BackendSpec(
                    kind=settings.backend,
                    model=settings.backend_model,
                    host=settings.backend_host,
                    options=backend_options(settings),
                )
            )
            system = ChatMessage(role="system", content=m.system_prompt or DIRECT_SYSTEM)
            res: ModelResult = results[m.name]
            try:
                for i, q in enumerate(questions):
                    text = await backend.complete(
                        [system, ChatMessage(role="user", content=q.q)],
                        max_tokens=settings.max_tokens,
                        temperature=settings.temperature,
                        seed=seed,
                        timeout_s=settings.generation_timeout_s,
                    )
                    right = q.right(text)
                    res.direct_right += right
                    if i < len(res.samples):
                        res.samples[i].update(direct=text.strip(), direct_right=right)
                    bar.advance(task)
            finally:
                await backend.close()
