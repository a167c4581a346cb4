"""The Gemini backend through the real `google-genai` client against the local
Gemini-shaped endpoint in `gemini_server.py` (backed by the real SmolLM2 model)."""

from __future__ import annotations

import logging
import time

import pytest
from fastapi import FastAPI
from google import genai
from google.genai import types
from pydantic import SecretStr

from llmchat.llm.backends import (
    BackendError,
    BackendSpec,
    BackendUnavailable,
    ChatMessage,
    ModelNotFound,
    RateLimited,
    RetryPolicy,
    create_backend,
)
from llmchat.llm.backends.gemini import GeminiBackend

from .gemini_server import TEST_API_KEY as GEMINI_TEST_KEY
from .serving import closed_port

pytestmark = [
    pytest.mark.model,
    # google-genai subclasses aiohttp.ClientSession when aiohttp is installed
    pytest.mark.filterwarnings("ignore:Inheritance class AiohttpClientSession:DeprecationWarning"),
]

PROMPT = [
    ChatMessage(role="system", content="You are a judge. Answer briefly."),
    ChatMessage(role="user", content="Is the sky blue? Answer yes or no."),
]
FAST_RETRY = RetryPolicy(attempts=3, initial_delay_s=0.05, max_delay_s=0.2)


def make(url: str, model: str = "gemini-local", key: str = GEMINI_TEST_KEY) -> GeminiBackend:
    return GeminiBackend(model, api_key=key, base_url=url, retry=FAST_RETRY)


async def run(backend: GeminiBackend, **kw: object) -> list[str]:
    args: dict[str, object] = {"max_tokens": 16, "temperature": 0.0, "seed": 5, "timeout_s": 60.0}
    args.update(kw)
    return [d async for d in backend.stream_chat(PROMPT, **args)]  # type: ignore[arg-type]


async def test_raw_sdk_against_local_endpoint(gemini_url: str) -> None:
    client = genai.Client(
        api_key=GEMINI_TEST_KEY, http_options=types.HttpOptions(base_url=gemini_url)
    )
    try:
        cfg = types.GenerateContentConfig(max_output_tokens=8, temperature=0)
        resp = await client.aio.models.generate_content(
            model="gemini-local", contents="Hello", config=cfg
        )
        assert resp.text
        assert resp.usage_metadata
        assert resp.usage_metadata.candidates_token_count
        assert resp.candidates
        assert resp.candidates[0].finish_reason is not None
        chunks = [
            c
            async for c in await client.aio.models.generate_content_stream(
                model="gemini-local", contents="Hello", config=cfg
            )
        ]
        assert len(chunks) > 1
        assert chunks[-1].usage_metadata is not None
    finally:
        await client.aio.aclose()


async def test_streams_text_with_system_instruction(gemini_url: str) -> None:
    backend = create_backend(
        BackendSpec(
            kind="gemini", model="gemini-local", host=gemini_url, api_key=SecretStr(GEMINI_TEST_KEY)
        )
    )
    try:
        assert await backend.health()
        deltas = [
            d
            async for d in backend.stream_chat(
                PROMPT, max_tokens=16, temperature=0.0, seed=5, timeout_s=60.0
            )
        ]
        assert len(deltas) > 1
        assert all(deltas)
        assert len(deltas) <= 16
    finally:
        await backend.close()


async def test_429_maps_to_rate_limited_after_retries(gemini_url: str, gemini_app: FastAPI) -> None:
    backend = make(gemini_url, "rate-limited")
    before = gemini_app.state.calls["rate-limited"]
    t0 = time.monotonic()
    try:
        with pytest.raises(RateLimited, match="RESOURCE_EXHAUSTED") as info:
            await run(backend)
    finally:
        await backend.close()
    assert isinstance(info.value, BackendUnavailable)
    assert gemini_app.state.calls["rate-limited"] - before == 3
    assert time.monotonic() - t0 < 5.0


async def test_500_maps_to_unavailable(gemini_url: str, gemini_app: FastAPI) -> None:
    backend = make(gemini_url, "server-error")
    before = gemini_app.state.calls["server-error"]
    try:
        with pytest.raises(BackendUnavailable, match="INTERNAL") as info:
            await run(backend)
    finally:
        await backend.close()
    assert not isinstance(info.value, RateLimited)
    assert gemini_app.state.calls["server-error"] - before == 3


async def test_unknown_model_and_bad_key(gemini_url: str) -> None:
    backend = make(gemini_url, "gemini-9-ultra")
    try:
        with pytest.raises(ModelNotFound, match="gemini-9-ultra"):
            await run(backend)
    finally:
        await backend.close()
    backend = make(gemini_url, key="wrong-key")
    try:
        with pytest.raises(BackendError, match="INVALID_ARGUMENT") as info:
            await run(backend)
        assert not isinstance(info.value, BackendUnavailable)
        assert "wrong-key" not in str(info.value)
    finally:
        await backend.close()


async def test_api_key_never_logged(gemini_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    backend = make(gemini_url)
    failing = make(gemini_url, "overloaded")
    try:
        assert await run(backend)
        with pytest.raises(BackendUnavailable):
            await run(failing)  # retries log warnings
        assert "gemini:overloaded" in caplog.text
        assert GEMINI_TEST_KEY not in repr(backend)
    finally:
        await backend.close()
        await failing.close()
    assert GEMINI_TEST_KEY not in caplog.text
    for record in caplog.records:
        assert GEMINI_TEST_KEY not in record.getMessage()
        assert GEMINI_TEST_KEY not in str(record.args)


async def test_endpoint_down_is_unavailable() -> None:
    backend = make(f"http://127.0.0.1:{closed_port()}")
    t0 = time.monotonic()
    try:
        with pytest.raises(BackendUnavailable) as info:
            await run(backend)
    finally:
        await backend.close()
    assert info.value.attempts == 3
    assert time.monotonic() - t0 < 5.0
