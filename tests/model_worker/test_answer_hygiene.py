"""Answer hygiene in a real worker job loop (real redis-server, a scripted backend): an answer
that copies an earlier line of the room is asked again from the message alone; a cut answer is
posted marked as cut; an answer that only speaks for others is reported, not posted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import redis.asyncio as aioredis
from model_worker.prompt import message_alone, repeats_the_window
from model_worker.settings import WorkerSettings
from model_worker.worker import Worker

from llmchat import keys
from llmchat.llm.backends.base import Backend, ChatMessage, Generation, estimate_tokens
from llmchat.models import Entry, EntryKind, NewEntry, RoomCreate
from llmchat.rooms import RoomStore
from llmchat.router import Router
from llmchat.timeline import Timeline
from tests.support.procs import RedisServer

Reply = Callable[[list[ChatMessage]], tuple[str, str]]


class ScriptedBackend(Backend):
    """Answers with ``reply(messages)`` -> (text, finish reason); records every prompt."""

    name = "scripted"

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.prompts: list[list[ChatMessage]] = []

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
        self.prompts.append(list(messages))
        text, finish = self.reply(messages)
        for word in text.split(" "):
            yield word + " "
        if info is not None:
            info.finish_reason = finish

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def health(self) -> bool:
        return True

    async def close(self) -> None:
        return None


async def run_turns(
    redis_url: str, backend: ScriptedBackend, questions: list[str]
) -> tuple[list[Entry], list[dict[str, object]]]:
    """Post ``questions`` one by one to a one-model room served by an in-process worker;
    the room's entries and the live events seen."""
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    room = "hy"
    await RoomStore(redis).create(
        RoomCreate.model_validate({"name": room, "mode": "all", "models": [{"name": "ada"}]})
    )
    settings = WorkerSettings(redis_url=redis_url, model_name="ada", rooms=[room], elections=False)
    stop = asyncio.Event()
    task = asyncio.create_task(Worker(settings, redis, backend).run(stop))
    events: list[dict[str, object]] = []
    listener = asyncio.create_task(_listen(redis_url, room, events))
    timeline = Timeline(redis)
    router = Router(redis, timeline)
    try:
        await asyncio.sleep(0.3)
        for i, q in enumerate(questions):
            await router.post(room, NewEntry(kind=EntryKind.HUMAN, author="al", text=q))
            async with asyncio.timeout(30):
                while sum(e.kind != "human" for e in await timeline.read_after(room, "0-0")) <= i:
                    await asyncio.sleep(0.05)
        return await timeline.read_after(room, "0-0"), events
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        listener.cancel()
        await redis.aclose()


async def _listen(redis_url: str, room: str, events: list[dict[str, object]]) -> None:
    redis = aioredis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(keys.live_channel(room))
        async for message in pubsub.listen():
            if message["type"] == "message":
                events.append(json.loads(message["data"]))
    finally:
        await pubsub.aclose()
        await redis.aclose()


def test_repeats_are_lines_of_the_window_word_for_word_and_not_short() -> None:
    msgs = [
        ChatMessage(role="system", content="You are ada."),
        ChatMessage(role="user", content="al: What is the capital of France?"),
        ChatMessage(role="assistant", content="The capital of France is Paris."),
        ChatMessage(role="user", content="bo: Yes it is.\nal: And of Spain?"),
    ]
    assert repeats_the_window("the capital of France is Paris", msgs, "ada")
    assert repeats_the_window("Yes it is!", msgs, "ada") is False  # too short to be a loop
    assert not repeats_the_window("The capital of Spain is Madrid.", msgs, "ada")
    assert message_alone(msgs) == [msgs[0], msgs[-1]]


async def test_a_copied_answer_is_asked_again_from_the_message_alone(
    redis_server: RedisServer,
) -> None:
    def reply(messages: list[ChatMessage]) -> tuple[str, str]:
        earlier = [m.content for m in messages if m.role == "assistant"]
        if earlier:  # with history: loops on its first answer, word for word
            return earlier[0], "stop"
        return f"Answer to: {messages[-1].content}", "stop"

    backend = ScriptedBackend(reply)
    entries, events = await run_turns(
        redis_server.url, backend, ["What is the capital of France?", "And of Spain?"]
    )
    answers = [e for e in entries if e.kind == "model"]
    assert [a.text for a in answers] == [
        "Answer to: al: What is the capital of France?",
        "Answer to: al: And of Spain?",
    ]
    # first turn: one prompt (nothing to copy); second: the looping prompt, then the retry
    assert [len(p) for p in backend.prompts] == [2, 4, 2]
    assert backend.prompts[2] == [backend.prompts[1][0], backend.prompts[1][-1]]
    assert answers[1].meta["retried"] == "repeat" and "retried" not in answers[0].meta
    starts = [e for e in events if e.get("type") == "start"]
    assert [s.get("retry") for s in starts] == [None, None, "repeat"]


async def test_a_cut_answer_is_marked_and_one_for_others_only_is_reported(
    redis_server: RedisServer,
) -> None:
    script = iter(
        [
            ("A long answer that ran out of", "length"),
            ("al: I answer for al", "stop"),
            ("al: and once more for al", "stop"),  # the retry does it again: reported
        ]
    )
    backend = ScriptedBackend(lambda _m: next(script))
    entries, _ = await run_turns(redis_server.url, backend, ["Tell me everything.", "Hi?"])
    cut = next(e for e in entries if e.kind == "model")
    assert cut.meta["outcome"] == "cut" and cut.meta["truncated"] is True
    assert cut.meta["finish"] == "length"
    notes = [e for e in entries if e.kind == "system"]
    assert len(notes) == 1 and "spoke for other participants" in notes[0].text
    assert notes[0].meta["outcome"] == "empty" and notes[0].meta["forged_cut"] is True
    assert notes[0].meta["retried"] == "forged" and len(backend.prompts) == 3
    assert [e.kind for e in entries].count(EntryKind.MODEL) == 1  # the forged one: not posted


async def test_an_answer_written_as_the_asker_is_asked_again_without_the_name(
    redis_server: RedisServer,
) -> None:
    """smollm2-135m answers ``alice: Say hello in one sentence.`` with ``alice: Hello, I'm
    alice.``: primed by the label, it writes the asker's next line. Asked the message alone,
    without the label, it answers."""

    def reply(messages: list[ChatMessage]) -> tuple[str, str]:
        last = messages[-1].content
        if last.startswith("al: "):
            return "al: Hello, I'm al.", "stop"
        return f"Hello! You said: {last}", "stop"

    backend = ScriptedBackend(reply)
    entries, events = await run_turns(redis_server.url, backend, ["Say hello in one sentence."])
    answers = [e for e in entries if e.kind == "model"]
    assert [a.text for a in answers] == ["Hello! You said: Say hello in one sentence."]
    assert answers[0].meta["retried"] == "forged"
    assert backend.prompts[1][-1] == ChatMessage(role="user", content="Say hello in one sentence.")
    assert not [e for e in entries if e.kind == "system"]
    starts = [e for e in events if e.get("type") == "start"]
    assert [s.get("retry") for s in starts] == [None, "forged"]


def test_the_message_alone_unlabelled_keeps_its_lines_and_drops_the_name() -> None:
    msgs = [
        ChatMessage(role="system", content="You are ada."),
        ChatMessage(role="user", content="bo: hi"),
        ChatMessage(role="user", content="al: two lines:\n  - first\n  - second"),
    ]
    assert message_alone(msgs, unlabelled=True) == [
        msgs[0],
        ChatMessage(role="user", content="two lines:\n- first\n- second"),
    ]
    assert message_alone(msgs) == [msgs[0], msgs[-1]]
