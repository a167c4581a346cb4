"""The Gemini API key and the Redis password never appear in a log line or a repr: real
model-worker and judge processes (DEBUG logging) use both against a real, password-protected
redis-server and a Gemini-shaped endpoint that insists on the key."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from judge.scorers import GeminiScorer
from judge.settings import JudgeSettings
from model_worker.settings import WorkerSettings

from llmchat.llm.backends import BackendSpec, create_backend
from llmchat.models import NewEntry, RoomCreate, RoomMode, RoomModel
from llmchat.redact import redact_url
from llmchat.rooms import RoomStore
from llmchat.router import Router
from llmchat.timeline import Timeline
from tests.llmchat.llm.serving import ServerThread
from tests.support.procs import JudgeProc, ModelWorker, RedisServer

KEY = "gemini-key-MARKER-7f3a9c1e"
PASSWORD = "redis-pw-MARKER-51d0b2"


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        (f"redis://:{PASSWORD}@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        (f"rediss://user:{PASSWORD}@redis:6380/1", "rediss://***@redis:6380/1"),
        (f"redis://:{PASSWORD}/x@y@host:1/0", "redis://***@host:1/0"),  # unescaped / and @
        (f"redis://host/0?password={PASSWORD}&db=2", "redis://host/0?password=***&db=2"),
        (f"unix://:{PASSWORD}@/run/redis.sock?db=0", "unix://***@/run/redis.sock?db=0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_redact_url(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_settings_and_clients_repr_hide_the_key_and_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMCHAT_GEMINI_API_KEY", KEY)
    monkeypatch.setenv("LLMCHAT_REDIS_URL", f"redis://:{PASSWORD}@127.0.0.1:6379/0")
    worker = WorkerSettings(backend="gemini")
    judge = JudgeSettings(judge_provider="gemini")
    assert worker.gemini_api_key is not None and worker.gemini_api_key.get_secret_value() == KEY
    assert PASSWORD in worker.redis_url  # the value itself is intact; only its display hides it
    spec = BackendSpec(kind="gemini", model="gemini-x", api_key=worker.gemini_api_key)
    backend = create_backend(spec)
    scorer = GeminiScorer("gemini-x", KEY)
    shown = [repr(worker), str(worker), repr(judge), str(judge), repr(spec), repr(backend)]
    shown += [repr(scorer), f"{worker!r} {judge!s}"]
    for text in shown:
        assert KEY not in text and PASSWORD not in text
    assert "redis://***@127.0.0.1:6379/0" in repr(worker) and "***@127.0.0.1" in str(judge)


class Gemini:
    """A Gemini-shaped endpoint: answers only requests that carry exactly ``KEY``."""

    def __init__(self) -> None:
        self.keys: list[str | None] = []
        self.app = FastAPI()
        self.app.get("/{version}/models/{name}")(self.get_model)
        self.app.post("/{version}/models/{target}", response_model=None)(self.generate)

    def _check(self, request: Request) -> JSONResponse | None:
        key = request.headers.get("x-goog-api-key")
        self.keys.append(key)
        if key != KEY:
            body = {"error": {"code": 400, "message": "API key not valid.", "status": "BAD"}}
            return JSONResponse(body, status_code=400)
        return None

    async def get_model(self, version: str, name: str, request: Request) -> JSONResponse:
        if err := self._check(request):
            return err
        return JSONResponse({"name": f"models/{name}", "inputTokenLimit": 4096})

    async def generate(self, version: str, target: str, request: Request) -> Any:
        if err := self._check(request):
            return err
        body = await request.json()
        text = json.dumps(body)
        if target.endswith(":streamGenerateContent"):
            event = _response("The capital of France is Paris.")

            async def sse() -> AsyncIterator[bytes]:
                yield f"data: {json.dumps(event)}\r\n\r\n".encode()

            return StreamingResponse(sse(), media_type="text/event-stream")
        n = text.count('<answer id=\\"')
        scores = [{"id": chr(65 + i), "score": 6, "reason": "fine"} for i in range(n)]
        return JSONResponse(_response(json.dumps({"scores": scores})))


def _response(text: str) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 5, "totalTokenCount": 10},
    }


@pytest.fixture
def gemini() -> Iterator[tuple[str, Gemini]]:
    fake = Gemini()
    with ServerThread(fake.app) as srv:
        yield srv.url, fake


async def test_worker_and_judge_logs_never_show_the_key_or_the_redis_password(
    redis_server: RedisServer, tmp_path: Path, gemini: tuple[str, Gemini]
) -> None:
    url, fake = gemini
    plain = aioredis.Redis.from_url(redis_server.url)
    await plain.config_set("requirepass", PASSWORD)
    await plain.aclose()
    redis_url = f"redis://:{PASSWORD}@127.0.0.1:{redis_server.port}/0"
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    store = RoomStore(r)
    room = await store.create(
        RoomCreate(
            name="lobby", mode=RoomMode.ALL, models=[RoomModel(name="ada"), RoomModel(name="bob")]
        )
    )
    await store.join(room, "alice")
    common = {
        "LLMCHAT_GEMINI_API_KEY": KEY,
        "LLMCHAT_LOG_LEVEL": "DEBUG",
        "LLMCHAT_LOG_FORMAT": "json",
    }
    worker_env = {
        **common,
        "LLMCHAT_BACKEND": "gemini",
        "LLMCHAT_BACKEND_MODEL": "gemini-local",
        "LLMCHAT_BACKEND_HOST": url,
    }
    judge_env = {**common, "LLMCHAT_JUDGE_PROVIDER": "gemini", "LLMCHAT_GEMINI_BASE_URL": url}
    logs = tmp_path / "logs"
    procs = [
        ModelWorker(redis_url, logs, "ada", env=worker_env),
        ModelWorker(redis_url, logs, "bob", env=worker_env),
        JudgeProc(redis_url, logs, "judge", env=judge_env),
    ]
    try:
        for p in procs:
            p.start()
        res = await Router(r, Timeline(r)).post("lobby", NewEntry(author="alice", text="Capital?"))
        cut = res.append.entry.id
        deadline = time.monotonic() + 60
        verdict = None
        while verdict is None and time.monotonic() < deadline:
            entries = await Timeline(r).read_after("lobby", "0-0", 100)
            verdict = next((e for e in entries if e.meta.get("round") == cut), None)
            await asyncio.sleep(0.2)
        assert verdict is not None, "no verdict within 60 s"
        assert verdict.meta["outcome"] == "scored"  # the judge reached Gemini with the key
        answers = [e for e in entries if e.kind == "model" and e.meta.get("cut") == cut]
        assert sorted(e.author for e in answers) == ["ada", "bob"]
    finally:
        for p in procs:
            p.stop()
        await r.aclose()
    assert fake.keys and set(fake.keys) == {KEY}  # every request carried the real key
    started = {"worker_started": 0, "judge_started": 0}
    for p in procs:
        text = p.log_path.read_text(errors="replace")
        assert text.strip(), p.log_path
        assert KEY not in text, f"the Gemini key is in {p.log_path.name}"
        assert PASSWORD not in text, f"the Redis password is in {p.log_path.name}"
        for line in text.splitlines():
            with_event = json.loads(line) if line.startswith("{") else {}
            if with_event.get("event") in started:
                started[with_event["event"]] += 1
                assert with_event["redis"] == f"redis://***@127.0.0.1:{redis_server.port}/0"
    assert started == {"worker_started": 2, "judge_started": 1}
