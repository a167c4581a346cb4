"""One answer's generation: the backend's tokens streamed live into the room, the answer
cleaned, and asked once more when a small model only repeated the room or spoke for others.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from llmchat import live
from llmchat.llm.backends.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    ChatMessage,
    Generation,
    GenerationTimeout,
    ModelNotFound,
)
from llmchat.logs import get_logger
from llmchat.redis_conn import UNAVAILABLE_ERRORS
from model_worker import metrics
from model_worker.prompt import (
    clean_answer,
    message_alone,
    repeats_the_window,
    speaks_for_others,
    stop_sequences,
)
from model_worker.settings import WorkerSettings
from model_worker.watchdog import LoopWatchdog

log = get_logger(__name__)


@dataclass
class Streamed:
    """What one generation produced, and how it ended."""

    parts: list[str] = field(default_factory=list)
    first: float | None = None
    outcome: str = "ok"
    problem: str = ""
    info: Generation = field(default_factory=Generation)

    @property
    def raw(self) -> str:
        return "".join(self.parts)


class AnswerStreamer:
    """Generates a model's answers with its backend, publishing the tokens live."""

    def __init__(
        self,
        settings: WorkerSettings,
        redis: aioredis.Redis,
        backend: Backend,
        watchdog: LoopWatchdog,
    ) -> None:
        self.settings = settings
        self.model = settings.model_name
        self.redis = redis
        self.backend = backend
        self.watchdog = watchdog
        self.healthy = True  # the backend answers
        self.streaming = False  # tokens are being published (an answer is under way)

    async def answer(
        self,
        room: str,
        base: dict[str, Any],
        messages: list[ChatMessage],
        speakers: set[str],
    ) -> tuple[Streamed, str, list[ChatMessage], str | None]:
        """Stream the answer, cleaned; asked once more, from the message being answered alone,
        when a small model copied an earlier line of the room word for word (``repeat``) or
        wrote nothing but someone else's line (``forged``: ``alice: Hello, I'm alice.``)."""
        out = await self.stream(room, base, messages, speakers)
        text = clean_answer(out.raw, self.model, speakers)
        if out.outcome != "ok":
            return out, text, messages, None
        if repeats_the_window(text, messages, self.model):
            retried, alone = "repeat", message_alone(messages)
        elif not text and speaks_for_others(out.raw, self.model, speakers):
            retried, alone = "forged", message_alone(messages, unlabelled=True)
        else:
            return out, text, messages, None
        metrics.GENERATIONS.labels(self.model, retried).inc()
        log.info("answer_retrying", model=self.model, room=room, turn=base["turn"], why=retried)
        out = await self.stream(room, {**base, "retry": retried}, alone, speakers)
        return out, clean_answer(out.raw, self.model, speakers), alone, retried

    async def stream(
        self, room: str, base: dict[str, Any], messages: list[ChatMessage], speakers: set[str]
    ) -> Streamed:
        """One generation, its tokens published live as they come (a "start" event first)."""
        await live.publish(self.redis, room, {"type": "start", **base})
        out = Streamed()
        started = time.monotonic()
        self.streaming = True
        try:
            async for delta in self.backend.stream_chat(
                messages,
                max_tokens=self.settings.max_tokens,
                temperature=self.settings.temperature,
                seed=self.settings.seed,
                timeout_s=self.settings.generation_timeout_s,
                stop=stop_sequences(speakers, self.model),
                info=out.info,
            ):
                if not delta:
                    continue
                if out.first is None:
                    out.first = time.monotonic() - started
                    metrics.FIRST_TOKEN.labels(self.model).observe(out.first)
                out.parts.append(delta)
                self.watchdog.beat(self.settings.generation_timeout_s)
                metrics.TOKENS.labels(self.model).inc()
                await live.publish(
                    self.redis,
                    room,
                    {"type": "delta", "seq": len(out.parts), "text": delta, **base},
                )
            self.healthy = True
        except GenerationTimeout:
            out.outcome = "timeout"
        except ModelNotFound as exc:
            out.outcome, out.problem = "model_not_found", str(exc)
        except BackendUnavailable as exc:
            out.outcome, out.problem = "unavailable", str(exc)
            self.healthy = False
        except BackendError as exc:
            out.outcome, out.problem = "error", str(exc)
        except asyncio.CancelledError:
            with contextlib.suppress(*UNAVAILABLE_ERRORS):
                await live.publish(
                    self.redis, room, {"type": "end", "outcome": "preempted", **base}
                )
            raise
        finally:
            self.streaming = False
        return out


def turn_outcome(out: Streamed, text: str, forged: bool) -> tuple[str, str | None]:
    """How a generation ended for the room, and the problem to report if any: an answer that
    cleaned down to nothing is ``empty`` (it only spoke for others, or said nothing); one the
    backend stopped for its token budget is ``cut``; else the stream's own outcome."""
    if not text and out.outcome == "ok":
        if forged:
            return "empty", "its answer only spoke for other participants, so it was not posted"
        return "empty", "the model returned an empty answer"
    if out.outcome == "ok" and out.info.cut:
        return "cut", out.problem
    return out.outcome, out.problem
