"""The backend interface every model provider implements, and its typed errors.

A backend turns a list of chat messages into a stream of text deltas. The worker builds
`ChatMessage` objects from the room timeline, trims them to a prompt budget with
`Backend.count_tokens`, and calls `Backend.stream_chat`.

Error contract (every backend maps its provider's failures onto these):

* `BackendUnavailable` — the server cannot be reached or keeps failing (connection refused,
  5xx, rate limiting) after a bounded number of retries. Retryable later.
* `ModelNotFound` — the named model does not exist (or is not installed); the message says
  which model and, where we know it, how to get it. Not retryable.
* `GenerationTimeout` — the wall-clock `timeout_s` ran out. Deltas produced before the
  deadline were already yielded; `partial` holds their concatenation.
* `BackendError` — anything else (bad request, authentication, malformed response).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict

logger = logging.getLogger(__name__)

Role = Literal["system", "user", "assistant"]


class ChatMessage(BaseModel):
    """One message of the prompt, in the common chat shape."""

    model_config = ConfigDict(frozen=True)

    role: Role
    content: str


@dataclass
class Generation:
    """What a backend tells about one `stream_chat` call once it ends (filled in as it goes).

    ``finish_reason``: ``"stop"`` (the model ended its answer, or a stop sequence matched),
    ``"length"`` (``max_tokens`` ran out: the answer is cut), or None when not known.
    """

    finish_reason: str | None = None

    @property
    def cut(self) -> bool:
        return self.finish_reason == "length"


class BackendError(Exception):
    """A backend failed in a way that is not one of the more specific errors below."""

    def __init__(self, message: str, *, backend: str | None = None) -> None:
        super().__init__(message)
        self.backend = backend


class BackendUnavailable(BackendError):  # noqa: N818 - name fixed by the interface
    """The backend cannot be reached, or keeps failing, after bounded retries."""

    def __init__(
        self,
        message: str,
        *,
        backend: str | None = None,
        attempts: int = 1,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, backend=backend)
        self.attempts = attempts
        self.retry_after_s = retry_after_s


class RateLimited(BackendUnavailable):
    """The provider refused for quota or rate reasons (HTTP 429) after bounded retries."""


class ModelNotFound(BackendError):  # noqa: N818
    """The requested model does not exist or is not installed."""

    def __init__(self, message: str, *, model: str, backend: str | None = None) -> None:
        super().__init__(message, backend=backend)
        self.model = model


class ModelChecksumError(BackendError):
    """A model file's sha256 does not match the pinned digest (corrupt or tampered file)."""


class GenerationTimeout(BackendError):  # noqa: N818
    """The generation ran past its wall-clock limit. `partial` is the text produced so far."""

    def __init__(
        self, message: str, *, partial: str = "", timeout_s: float, backend: str | None = None
    ) -> None:
        super().__init__(message, backend=backend)
        self.partial = partial
        self.timeout_s = timeout_s


class Backend(abc.ABC):
    """A chat model provider.

    Implementations must be safe to call concurrently from one event loop; they serialise
    internally where the underlying runtime is not re-entrant.
    """

    #: A short human-readable identifier, e.g. ``"llamacpp:smollm2-135m"``.
    name: str

    @abc.abstractmethod
    def stream_chat(
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
        """Stream the assistant's reply as text deltas (implemented as an async generator).

        Raises `GenerationTimeout` once `timeout_s` (wall clock, from the call) is exceeded,
        after yielding whatever was produced before the deadline. ``info``, when given, gets
        the finish reason once the stream ends.
        """

    @abc.abstractmethod
    def count_tokens(self, text: str) -> int:
        """The number of tokens `text` takes in this model's prompt (exact or estimated)."""

    @abc.abstractmethod
    async def health(self) -> bool:
        """True when the backend can serve requests right now. Never raises."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections, threads and models. Idempotent."""

    async def complete(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        seed: int | None = None,
        timeout_s: float,
        stop: list[str] | None = None,
    ) -> str:
        """Convenience: run `stream_chat` and return the whole reply."""
        parts: list[str] = []
        async for delta in self.stream_chat(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            seed=seed,
            timeout_s=timeout_s,
            stop=stop,
        ):
            parts.append(delta)
        return "".join(parts)


def estimate_tokens(text: str) -> int:
    """A provider-neutral token estimate: about four characters per token, never zero for text."""
    if not text:
        return 0
    return max(1, (len(text) + 3) // 4)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter for establishing a stream."""

    attempts: int = 3
    initial_delay_s: float = 0.2
    max_delay_s: float = 2.0

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1-based)."""
        base: float = min(self.max_delay_s, self.initial_delay_s * (2 ** (attempt - 1)))
        return base * (0.75 + random.random() / 2)


T = TypeVar("T")


async def retry_async(
    op: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    retryable: Callable[[BaseException], bool],
    deadline: float | None,
    what: str,
) -> T:
    """Run `op` up to `policy.attempts` times while `retryable(exc)`; never sleep past `deadline`.

    The last retryable exception is re-raised unchanged; callers map it to a typed error.
    """
    loop = asyncio.get_running_loop()
    for attempt in range(1, policy.attempts + 1):
        try:
            return await op()
        except Exception as exc:
            if not retryable(exc) or attempt >= policy.attempts:
                raise
            pause = policy.delay(attempt)
            if deadline is not None and loop.time() + pause >= deadline:
                raise
            logger.warning(
                "%s failed (attempt %d/%d: %s); retrying in %.2fs",
                what,
                attempt,
                policy.attempts,
                type(exc).__name__,
                pause,
            )
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover
