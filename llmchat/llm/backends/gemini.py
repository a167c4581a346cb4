"""Gemini backend through `google-genai` (the judge when an API key is configured).

`base_url` overrides the endpoint (tests point it at a local Gemini-shaped server). System
messages become `system_instruction`; assistant turns use Gemini's ``model`` role.

Errors: 404 → `ModelNotFound`; 429 → `RateLimited` and 5xx / connection failures →
`BackendUnavailable`, both after bounded retries made before the first delta; other 4xx
(bad request, invalid key, permission) → `BackendError`; `timeout_s` → `GenerationTimeout`.
The API key is held in a `SecretStr`-like private attribute and never logged or put into an
error message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from llmchat.llm.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    ChatMessage,
    Generation,
    GenerationTimeout,
    ModelNotFound,
    RateLimited,
    RetryPolicy,
    estimate_tokens,
    retry_async,
)

logger = logging.getLogger(__name__)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level failures of whichever HTTP stack google-genai picked."""
    errs: list[type[BaseException]] = [httpx.TransportError, ConnectionError]
    try:
        import aiohttp  # noqa: PLC0415 - google-genai uses aiohttp when it is installed
    except ImportError:  # pragma: no cover - depends on the environment
        pass
    else:
        errs.append(aiohttp.ClientConnectionError)
    return tuple(errs)


TRANSPORT_ERRORS = _transport_errors()


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, genai_errors.APIError):
        return exc.code == 429 or exc.code >= 500
    return isinstance(exc, TRANSPORT_ERRORS)


def to_gemini(messages: list[ChatMessage]) -> tuple[str | None, list[types.Content]]:
    """Split our messages into Gemini's system instruction and contents."""
    system = [m.content for m in messages if m.role == "system"]
    contents = [
        types.Content(
            role="model" if m.role == "assistant" else "user",
            parts=[types.Part(text=m.content)],
        )
        for m in messages
        if m.role != "system"
    ]
    return ("\n\n".join(system) if system else None), contents


class GeminiBackend(Backend):
    """A Gemini model via the Gemini Developer API (or a compatible local endpoint)."""

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str | None = None,
        options: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        name: str | None = None,
    ) -> None:
        if not api_key:
            raise BackendError("gemini: an API key is required", backend="gemini")
        self.model = model
        self.name = name or f"gemini:{model}"
        self.options = dict(options or {})
        self.retry = retry or RetryPolicy()
        self._base_url = base_url
        # attempts=1 disables the SDK's own retries, including the implicit 1-10 s sleeps of
        # its aiohttp path on connection errors: our RetryPolicy is the only, bounded, one.
        http_options = types.HttpOptions(
            base_url=base_url, retry_options=types.HttpRetryOptions(attempts=1)
        )
        self._client = genai.Client(api_key=api_key, http_options=http_options)

    def __repr__(self) -> str:  # never show the key
        return f"GeminiBackend(model={self.model!r}, base_url={self._base_url!r})"

    def count_tokens(self, text: str) -> int:
        """An estimate (no network call): about four characters per token."""
        return estimate_tokens(text)

    async def health(self) -> bool:
        try:
            await asyncio.wait_for(self._client.aio.models.get(model=self.model), timeout=5.0)
        except Exception as exc:
            logger.warning("%s unhealthy: %s", self.name, type(exc).__name__)
            return False
        return True

    async def close(self) -> None:
        await self._client.aio.aclose()

    async def stream_chat(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None = None,
        timeout_s: float,
        stop: list[str] | None = None,
        info: Generation | None = None,
    ) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        system, contents = to_gemini(messages)
        config = types.GenerateContentConfig(
            system_instruction=system,
            temperature=temperature,
            max_output_tokens=max_tokens,
            seed=seed,
            stop_sequences=stop or None,
            **self.options,
        )
        produced: list[str] = []

        async def open_stream() -> tuple[AsyncIterator[types.GenerateContentResponse], Any]:
            stream = await self._client.aio.models.generate_content_stream(
                model=self.model, contents=contents, config=config
            )
            first = await anext(stream)
            return stream, first

        try:
            async with asyncio.timeout_at(deadline):
                try:
                    stream, chunk = await retry_async(
                        open_stream,
                        policy=self.retry,
                        retryable=_is_retryable,
                        deadline=deadline,
                        what=f"{self.name} generate",
                    )
                except StopAsyncIteration:
                    return
                while True:
                    if info is not None and (reason := _finish_of(chunk)):
                        info.finish_reason = reason
                    delta = _text_of(chunk)
                    if delta:
                        produced.append(delta)
                        yield delta
                    try:
                        chunk = await anext(stream)
                    except StopAsyncIteration:
                        return
        except TimeoutError:
            raise GenerationTimeout(
                f"{self.name}: generation exceeded {timeout_s:.2f}s",
                partial="".join(produced),
                timeout_s=timeout_s,
                backend=self.name,
            ) from None
        except genai_errors.APIError as exc:
            raise self._map_api_error(exc) from None
        except TRANSPORT_ERRORS as exc:
            raise BackendUnavailable(
                f"{self.name}: cannot reach the Gemini endpoint after "
                f"{self.retry.attempts} attempts ({type(exc).__name__})",
                backend=self.name,
                attempts=self.retry.attempts,
            ) from None

    def _map_api_error(self, exc: genai_errors.APIError) -> BackendError:
        detail = f"{exc.code} {exc.status}: {exc.message}"
        if exc.code == 404:
            return ModelNotFound(
                f"{self.name}: model {self.model!r} not found ({detail})",
                model=self.model,
                backend=self.name,
            )
        if exc.code == 429:
            return RateLimited(
                f"{self.name}: rate limited after {self.retry.attempts} attempts ({detail})",
                backend=self.name,
                attempts=self.retry.attempts,
            )
        if exc.code >= 500:
            return BackendUnavailable(
                f"{self.name}: server error after {self.retry.attempts} attempts ({detail})",
                backend=self.name,
                attempts=self.retry.attempts,
            )
        return BackendError(f"{self.name}: request rejected ({detail})", backend=self.name)


def _finish_of(chunk: types.GenerateContentResponse) -> str | None:
    """Gemini's finish reason in our terms: MAX_TOKENS is a cut answer, STOP a finished one."""
    for cand in (chunk.candidates or [])[:1]:
        if cand.finish_reason == types.FinishReason.MAX_TOKENS:
            return "length"
        if cand.finish_reason is not None:
            return "stop" if cand.finish_reason == types.FinishReason.STOP else "other"
    return None


def _text_of(chunk: types.GenerateContentResponse) -> str:
    """The text parts of a streamed chunk (without the SDK's warnings on non-text parts)."""
    out: list[str] = []
    for cand in (chunk.candidates or [])[:1]:
        if cand.content and cand.content.parts:
            out.extend(p.text for p in cand.content.parts if p.text and not p.thought)
    return "".join(out)
