"""The Ollama backend over real HTTP, with the official `ollama` client, against the
Ollama-compatible server in `ollama_server.py` (backed by the real SmolLM2 model)."""

from __future__ import annotations

import time

import ollama
import pytest

from llmchat.llm.backends import (
    BackendSpec,
    BackendUnavailable,
    ChatMessage,
    ModelNotFound,
    RetryPolicy,
    create_backend,
)
from llmchat.llm.backends.ollama import OllamaBackend

from .serving import closed_port

pytestmark = pytest.mark.model

PROMPT = [
    ChatMessage(role="system", content="You are a friendly assistant."),
    ChatMessage(role="user", content="Say hello to the room."),
]


async def test_official_client_speaks_to_the_server(ollama_url: str) -> None:
    async with ollama.AsyncClient(host=ollama_url) as client:
        assert [m.model for m in (await client.list()).models] == ["smollm2:135m"]
        resp = await client.chat(
            model="smollm2:135m",
            messages=[{"role": "user", "content": "Hi"}],
            stream=False,
            options={"num_predict": 8, "temperature": 0},
        )
        assert resp.done
        assert resp.message.content
        assert resp.eval_count
        chunks = [
            c
            async for c in await client.chat(
                model="smollm2:135m",
                messages=[{"role": "user", "content": "Hi"}],
                stream=True,
                options={"num_predict": 8, "temperature": 0},
            )
        ]
        assert chunks[-1].done
        assert chunks[-1].done_reason in ("stop", "length")
        assert all(not c.done for c in chunks[:-1])
        assert (await client.chat(model="smollm2:135m", messages=[])).done  # load-only call


async def test_streams_through_backend(ollama_url: str) -> None:
    backend = create_backend(
        BackendSpec(
            kind="ollama", model="smollm2:135m", host=ollama_url, options={"repeat_penalty": 1.1}
        )
    )
    try:
        assert await backend.health()
        deltas = [
            d
            async for d in backend.stream_chat(
                PROMPT, max_tokens=16, temperature=0.0, seed=3, timeout_s=60.0
            )
        ]
        assert len(deltas) > 1
        assert all(deltas)
        assert len(deltas) <= 16
        again = [
            d
            async for d in backend.stream_chat(
                PROMPT, max_tokens=16, temperature=0.0, seed=3, timeout_s=60.0
            )
        ]
        assert "".join(again) == "".join(deltas)
        assert backend.count_tokens("abcdefgh") == 2  # an estimate, chars/4
    finally:
        await backend.close()


async def test_unknown_model_is_model_not_found(ollama_url: str) -> None:
    backend = OllamaBackend("llama9:404b", host=ollama_url)
    try:
        with pytest.raises(ModelNotFound) as info:
            async for _ in backend.stream_chat(
                PROMPT, max_tokens=4, temperature=0.0, timeout_s=30.0
            ):
                pass
        assert info.value.model == "llama9:404b"
        assert "llama9:404b" in str(info.value)
        assert "not found" in str(info.value)
    finally:
        await backend.close()


async def test_server_down_is_bounded_retry_then_unavailable() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    backend = OllamaBackend(
        "smollm2:135m", host=url, retry=RetryPolicy(attempts=3, initial_delay_s=0.1)
    )
    try:
        assert not await backend.health()
        t0 = time.monotonic()
        with pytest.raises(BackendUnavailable) as info:
            async for _ in backend.stream_chat(
                PROMPT, max_tokens=4, temperature=0.0, timeout_s=30.0
            ):
                pass
        elapsed = time.monotonic() - t0
        assert info.value.attempts == 3
        assert 0.1 <= elapsed < 5.0, elapsed  # it did back off, and it gave up in time
        assert url in str(info.value)
    finally:
        await backend.close()
