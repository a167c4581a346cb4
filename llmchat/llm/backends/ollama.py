"""Ollama backend through the official `ollama` Python client (`ollama.AsyncClient`).

Streaming `chat(..., stream=True)`; options temperature / num_predict / seed / stop, plus any
extra Ollama options given at construction (e.g. ``repeat_penalty``, ``num_ctx``).

Errors: connection failures (refused, reset, connect timeout) are retried with bounded
exponential backoff *before the first delta* (never after, which would duplicate text), then
raised as `BackendUnavailable`; HTTP 404 / "model ... not found" → `ModelNotFound`; 5xx after
retries → `BackendUnavailable`; other HTTP errors → `BackendError`; the wall-clock
`timeout_s` → `GenerationTimeout` (deltas before it were yielded).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, cast

import httpx
import ollama

from llmchat.llm.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    ChatMessage,
    Generation,
    GenerationTimeout,
    ModelNotFound,
    RetryPolicy,
    estimate_tokens,
    retry_async,
)

logger = logging.getLogger(__name__)

DEFAULT_HOST = "http://127.0.0.1:11434"


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | httpx.TransportError):
        return True
    return isinstance(exc, ollama.ResponseError) and exc.status_code in (502, 503, 504)


class OllamaBackend(Backend):
    """A model served by Ollama (or anything speaking its `/api/chat`)."""

    def __init__(
        self,
        model: str,
        *,
        host: str = DEFAULT_HOST,
        keep_alive: str | float | None = "10m",
        options: Mapping[str, Any] | None = None,
        retry: RetryPolicy | None = None,
        connect_timeout_s: float = 5.0,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.host = host
        self.name = name or f"ollama:{model}"
        self.keep_alive = keep_alive
        self.options = dict(options or {})
        self.retry = retry or RetryPolicy()
        # read=None: a slow model may pause between tokens; timeout_s bounds the whole call.
        timeout = httpx.Timeout(connect=connect_timeout_s, read=None, write=30.0, pool=30.0)
        self._client = ollama.AsyncClient(host=host, timeout=timeout)

    def count_tokens(self, text: str) -> int:
        """An estimate (Ollama has no tokenize endpoint): about four characters per token."""
        return estimate_tokens(text)

    async def health(self) -> bool:
        try:
            await asyncio.wait_for(self._client.list(), timeout=5.0)
        except Exception as exc:
            logger.warning("%s unhealthy: %s", self.name, type(exc).__name__)
            return False
        return True

    async def close(self) -> None:
        close = cast(Callable[[], Awaitable[None]], self._client.close)  # untyped upstream
        await close()

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
        options: dict[str, Any] = {
            **self.options,
            "temperature": temperature,
            "num_predict": max_tokens,
        }
        if seed is not None:
            options["seed"] = seed
        if stop:
            options["stop"] = stop
        payload = [{"role": m.role, "content": m.content} for m in messages]
        produced: list[str] = []

        async def open_stream() -> tuple[AsyncIterator[Any], Any]:
            stream = await self._client.chat(
                model=self.model,
                messages=payload,
                stream=True,
                options=options,
                keep_alive=self.keep_alive,
            )
            first = await anext(stream)  # connects and reads the first chunk
            return stream, first

        def timeout_error() -> GenerationTimeout:
            return GenerationTimeout(
                f"{self.name}: generation exceeded {timeout_s:.2f}s",
                partial="".join(produced),
                timeout_s=timeout_s,
                backend=self.name,
            )

        try:
            async with asyncio.timeout_at(deadline):
                try:
                    stream, chunk = await retry_async(
                        open_stream,
                        policy=self.retry,
                        retryable=_is_retryable,
                        deadline=deadline,
                        what=f"{self.name} chat",
                    )
                except StopAsyncIteration:
                    return
                while True:
                    delta = chunk.message.content if chunk.message else None
                    if delta:
                        produced.append(delta)
                        yield delta
                    if chunk.done:
                        if info is not None:
                            info.finish_reason = chunk.done_reason or "stop"
                        return
                    try:
                        chunk = await anext(stream)
                    except StopAsyncIteration:
                        return
        except TimeoutError:
            raise timeout_error() from None
        except ollama.ResponseError as exc:
            raise self._map_response_error(exc) from None
        except (ConnectionError, httpx.TransportError) as exc:
            raise BackendUnavailable(
                f"{self.name}: cannot reach Ollama at {self.host} "
                f"after {self.retry.attempts} attempts ({type(exc).__name__})",
                backend=self.name,
                attempts=self.retry.attempts,
            ) from None

    def _map_response_error(self, exc: ollama.ResponseError) -> BackendError:
        text = str(exc.error)
        if exc.status_code == 404 or ("not found" in text and "model" in text):
            return ModelNotFound(
                f"{self.name}: model {self.model!r} not found on {self.host} "
                f"(server said: {text}); pull it with `ollama pull {self.model}`",
                model=self.model,
                backend=self.name,
            )
        if exc.status_code >= 500 or exc.status_code == 429:
            return BackendUnavailable(
                f"{self.name}: server error {exc.status_code}: {text}",
                backend=self.name,
                attempts=self.retry.attempts,
            )
        return BackendError(f"{self.name}: HTTP {exc.status_code}: {text}", backend=self.name)
