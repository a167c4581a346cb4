"""model-worker through the Ollama backend, over real HTTP with the official `ollama` client,
against a server implementing the Ollama API routes the worker uses, backed by the real local
model; plus scripted Ollama servers for output no real model gives on demand (empty, garbage)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from llmchat_tools.client import RoomClient

from llmchat.llm.backends.llamacpp import LlamaModel
from llmchat.llm.models_registry import DEFAULT_MODEL, resolve_model
from tests.llmchat.llm import ollama_server
from tests.llmchat.llm.serving import ServerThread, closed_port
from tests.support.api import all_entries, make_room
from tests.support.auth import token
from tests.support.procs import ChatService, ModelWorker

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def ollama_url() -> Iterator[str]:
    model = LlamaModel(resolve_model(DEFAULT_MODEL), n_ctx=2048, n_threads=2)
    with ServerThread(ollama_server.create_app(model, names=("smollm2:135m",))) as srv:
        yield srv.url
    model.close()


def scripted_ollama(chunks: list[str]) -> FastAPI:
    """An Ollama-shaped /api/chat that streams exactly ``chunks`` (NDJSON), then done."""
    app = FastAPI()

    @app.post("/api/chat")
    async def chat() -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for c in chunks:
                msg = {
                    "model": "x",
                    "created_at": "2026-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": c},
                    "done": False,
                }
                yield (json.dumps(msg) + "\n").encode()
            done = {
                "model": "x",
                "created_at": "2026-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": ""},
                "done": True,
                "done_reason": "stop",
                "eval_count": len(chunks),
            }
            yield (json.dumps(done) + "\n").encode()

        return StreamingResponse(body(), media_type="application/x-ndjson")

    return app


async def ask(
    svc: ChatService, text: str, timeout: float = 90, answers: int = 1
) -> list[dict[str, object]]:
    c = RoomClient([svc.url], "lobby", "alice", token=token("alice"))
    await c.start()
    ack = await c.post(text)

    def about_this(e: dict[str, object]) -> bool:
        return isinstance(e["meta"], dict) and e["meta"].get("cut") == ack["cursor"]

    def settled(es: list[dict[str, object]]) -> bool:
        done = {e["author"] for e in es if e["kind"] == "model" and about_this(e)}
        done |= {e["meta"]["model"] for e in es if e["kind"] == "system" and about_this(e)}  # type: ignore[index]
        return len(done) >= answers

    await c.wait_for(settled, timeout=timeout)
    await c.close()
    return [
        e
        for e in all_entries(svc.url)
        if isinstance(e["meta"], dict) and e["meta"].get("cut") == ack["cursor"]
    ]


def ollama_worker(factory: Callable[..., ModelWorker], host: str, model: str) -> ModelWorker:
    return factory(
        "ada",
        LLMCHAT_BACKEND="ollama",
        LLMCHAT_BACKEND_HOST=host,
        LLMCHAT_BACKEND_MODEL=model,
        LLMCHAT_MAX_TOKENS="24",
    )


async def test_answers_stream_through_the_ollama_api(
    service: ChatService, worker_factory: Callable[..., ModelWorker], ollama_url: str
) -> None:
    make_room(service.url, "lobby", "all", ["ada"])
    w = ollama_worker(worker_factory, ollama_url, "smollm2:135m")
    got = await ask(service, "Say hello in one sentence.")
    answer = next(e for e in got if e["kind"] == "model")
    assert answer["author"] == "ada" and str(answer["text"]).strip()
    meta = answer["meta"]
    assert isinstance(meta, dict) and meta["backend"] == "ollama:smollm2:135m"
    # a 24-token budget may end the answer mid-sentence ("cut", posted and marked truncated)
    assert meta["tokens"] >= 1 and meta["outcome"] in ("ok", "cut")
    assert w.metric("llmchat_generations_total", outcome=meta["outcome"]) == 1


async def test_a_missing_model_is_explained_in_the_room(
    service: ChatService, worker_factory: Callable[..., ModelWorker], ollama_url: str
) -> None:
    make_room(service.url, "lobby", "all", ["ada"])
    w = ollama_worker(worker_factory, ollama_url, "llama9:70b")
    got = await ask(service, "hello?")
    note = next(e for e in got if e["kind"] == "system")
    assert "llama9:70b" in str(note["text"]) and "not found" in str(note["text"]).lower()
    assert not [e for e in got if e["kind"] == "model"]
    assert w.metric("llmchat_generations_total", outcome="model_not_found") == 1


async def test_a_server_that_is_down_gives_bounded_retries_then_a_visible_failure(
    service: ChatService, worker_factory: Callable[..., ModelWorker]
) -> None:
    make_room(service.url, "lobby", "all", ["ada"])
    w = ollama_worker(worker_factory, f"http://127.0.0.1:{closed_port()}", "smollm2:135m")
    got = await ask(service, "anyone there?", timeout=60)
    note = next(e for e in got if e["kind"] == "system")
    assert "could not answer" in str(note["text"])
    assert w.metric("llmchat_generations_total", outcome="unavailable") == 1
    assert w.metric("llmchat_backend_up", model="ada") == 0
    ready = httpx.get(w.url + "/readyz")
    assert ready.status_code == 503  # visible to probes; it drops out of elections meanwhile


@pytest.mark.parametrize(
    ("chunks", "outcome", "expect_text"),
    [
        ([], "empty", None),
        (["   ", "\n"], "empty", None),
        (["\x1b[31m", "ok\x00 ", "\x07fine"], "ok", "ok fine"),
    ],
)
async def test_empty_or_garbage_output_is_reported_not_a_crash(
    service: ChatService,
    worker_factory: Callable[..., ModelWorker],
    chunks: list[str],
    outcome: str,
    expect_text: str | None,
) -> None:
    make_room(service.url, "lobby", "all", ["ada"])
    with ServerThread(scripted_ollama(chunks)) as srv:
        w = ollama_worker(worker_factory, srv.url, "x")
        got = await ask(service, "say something")
        assert w.metric("llmchat_generations_total", outcome=outcome) == 1
        answers = [e for e in got if e["kind"] == "model"]
        if expect_text is None:
            assert not answers
            assert any("empty answer" in str(e["text"]) for e in got if e["kind"] == "system")
        else:
            assert [a["text"] for a in answers] == [expect_text]
        assert w.proc is not None and w.proc.poll() is None  # still running


async def test_endless_output_is_cut_by_max_tokens_and_the_timeout(
    service: ChatService, worker_factory: Callable[..., ModelWorker]
) -> None:
    make_room(service.url, "lobby", "all", ["ada", "bob"])
    worker_factory("ada", LLMCHAT_MAX_TOKENS="8")
    worker_factory("bob", LLMCHAT_MAX_TOKENS="2000", LLMCHAT_GENERATION_TIMEOUT_S="6")
    got = await ask(
        service, "Write a very long story about the sea, with many chapters.", answers=2
    )
    by = {e["author"]: e for e in got if e["kind"] == "model"}
    assert by["ada"]["meta"]["tokens"] <= 8  # type: ignore[index]
    bob = by["bob"]["meta"]
    assert isinstance(bob, dict) and bob["truncated"] is True and bob["outcome"] == "timeout"
    assert bob["total_s"] < 12
    assert any("cut off" in str(e["text"]) for e in got if e["kind"] == "system")
