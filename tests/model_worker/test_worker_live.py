"""model-worker with the real local model (SmolLM2 through llama.cpp), end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from llmchat_tools.client import RoomClient
from model_worker.prompt import flatten

from llmchat.llm.backends.base import ChatMessage
from tests.conftest import BOTH_REDIS
from tests.support.api import all_entries, make_room
from tests.support.auth import token
from tests.support.procs import ChatService, ModelWorker

pytestmark = pytest.mark.model


def history(svc: ChatService, room: str = "lobby") -> list[dict[str, Any]]:
    return all_entries(svc.url, room)


class Recorder:
    """A client that records entries and live events in arrival order."""

    def __init__(self, svc: ChatService, room: str, name: str) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.client = RoomClient(
            [svc.url],
            room,
            name,
            token=token(name),
            on_entry=lambda e: self.events.append(("entry", e)),
            on_live=lambda e: self.events.append(("live", e)),
        )

    def answers(self) -> list[dict[str, Any]]:
        return [e for k, e in self.events if k == "entry" and e["kind"] == "model"]


def window(answer: dict[str, Any]) -> list[str]:
    """The lines of the room an answer's recorded prompt showed (the same for every model)."""
    messages = [ChatMessage.model_validate(m) for m in answer["meta"]["prompt"]]
    return flatten(messages, answer["author"])


def outcomes(entries: list[dict[str, Any]], cut: str) -> list[dict[str, Any]]:
    """How a turn ended: the model's answer, or the note that it could not answer."""
    return [
        e
        for e in entries
        if e["kind"] in ("model", "system") and (e.get("meta") or {}).get("cut") == cut
    ]


async def first_delta(rec: Recorder, timeout: float = 60) -> dict[str, Any]:
    """The first live token delta recorded from now on (cleared events), waiting for it."""
    async with asyncio.timeout(timeout):
        while True:
            for kind, event in rec.events:
                if kind == "live" and event.get("type") == "delta":
                    return event
            await asyncio.sleep(0.02)


@BOTH_REDIS
async def test_all_room_same_cut_live_deltas_and_next_turn_context(
    service: ChatService, worker_factory: Callable[..., ModelWorker]
) -> None:
    make_room(service.url, "lobby", "all", ["ada", "bob"])
    for name in ("ada", "bob"):
        worker_factory(name, LLMCHAT_RECORD_PROMPT="1", LLMCHAT_MAX_TOKENS="40")
    rec = Recorder(service, "lobby", "alice")
    await rec.client.start()

    ack = await rec.client.post("Hello models, name a colour.")
    await rec.client.wait_for(lambda es: sum(e["kind"] == "model" for e in es) == 2, timeout=90)
    first = rec.answers()
    assert sorted(a["author"] for a in first) == ["ada", "bob"]
    assert all(a["meta"]["cut"] == ack["cursor"] for a in first)
    assert all(a["text"].strip() for a in first)
    ada, bob = sorted(first, key=lambda a: a["author"])
    # same cut, same window: the same lines (see model_worker.prompt), each model's own system
    assert window(ada) == window(bob) == ["alice: Hello models, name a colour."]
    assert ada["meta"]["prompt"][0] != bob["meta"]["prompt"][0]
    # live deltas of each model arrived before its final entry
    for answer in first:
        final_at = rec.events.index(("entry", answer))
        deltas = [
            i
            for i, (k, e) in enumerate(rec.events)
            if k == "live" and e.get("type") == "delta" and e["model"] == answer["author"]
        ]
        assert deltas, f"no live deltas from {answer['author']}"
        assert max(deltas) < final_at
        text = "".join(rec.events[i][1]["text"] for i in deltas)
        assert text.strip().startswith(answer["text"][:10].strip())

    # the next turn's context contains the previous turn's answers
    await rec.client.post("Thanks. Now name an animal.")
    await rec.client.wait_for(lambda es: sum(e["kind"] == "model" for e in es) == 4, timeout=90)
    second = rec.answers()[2:]
    assert window(second[0]) == window(second[1])
    for answer in second:
        lines = window(answer)
        assert any(line.startswith(f"ada: {ada['text'].strip()[:30]}") for line in lines)
        assert any(line.startswith(f"bob: {bob['text'].strip()[:30]}") for line in lines)
        assert lines[-1] == "alice: Thanks. Now name an animal."
        # its own earlier answer is its own (assistant) turn, the other's a user turn
        roles = [m["role"] for m in answer["meta"]["prompt"]]
        assert roles.count("assistant") == 1, roles
    await rec.client.close()


async def test_mention_reaches_that_model_only_and_unknown_name_is_explained(
    service: ChatService, worker_factory: Callable[..., ModelWorker]
) -> None:
    make_room(service.url, "lobby", "all", ["ada", "bob"])
    workers = {n: worker_factory(n, LLMCHAT_MAX_TOKENS="24") for n in ("ada", "bob")}
    rec = Recorder(service, "lobby", "alice")
    await rec.client.start()
    await rec.client.post("@bob just you, please say hi")
    await rec.client.wait_for(lambda es: any(e["kind"] == "model" for e in es), timeout=90)
    await rec.client.post("@nobody are you here?")
    await rec.client.wait_for(lambda es: any(e["kind"] == "system" for e in es), timeout=10)
    await asyncio.sleep(2.0)  # would-be extra answers have time to show up
    entries = history(service)
    assert [e["author"] for e in entries if e["kind"] == "model"][:1] == ["bob"]
    assert workers["ada"].metric("llmchat_generations_total") == 0 or all(
        e["meta"]["reason"] != "mention" for e in entries if e["author"] == "ada"
    )
    notice = next(e for e in entries if e["kind"] == "system")
    assert "@nobody" in notice["text"] and "@ada" in notice["text"] and "@bob" in notice["text"]
    await rec.client.close()


@BOTH_REDIS
async def test_two_replicas_split_jobs_and_a_sigkilled_one_is_taken_over(
    service: ChatService, worker_factory: Callable[..., ModelWorker]
) -> None:
    make_room(service.url, "lobby", "leader", ["ada"])
    env = {"LLMCHAT_MAX_TOKENS": "120", "LLMCHAT_CLAIM_IDLE_MS": "1500", "LLMCHAT_BATCH": "1"}
    w1 = worker_factory("ada", **env)
    w2 = worker_factory("ada", **env)
    for w in (w1, w2):
        w.wait_ready()
    rec = Recorder(service, "lobby", "alice")
    await rec.client.start()

    # both replicas take jobs. Not left to luck (an idle replica may well take every job):
    # the replica that starts answering the first question is frozen mid-answer (SIGSTOP),
    # so the second question can only be answered by the other one.
    first = await rec.client.post("question 0: say something")
    busy_consumer = (await first_delta(rec))["worker"]
    busy, other = (w1, w2) if busy_consumer == w1.consumer else (w2, w1)
    busy.pause()
    try:
        second = await rec.client.post("question 1: say something")
        await rec.client.wait_for(lambda es: bool(outcomes(es, second["cursor"])), timeout=120)
    finally:
        busy.resume()
    # the first question is answered too (by its replica once thawed, or reclaimed by the other)
    await rec.client.wait_for(lambda es: bool(outcomes(es, first["cursor"])), timeout=120)
    # the answer (or, when the small model's reply was not fit to post, the note saying so)
    assert {e["meta"]["worker"] for e in outcomes(rec.client.entries, second["cursor"])} == {
        other.consumer
    }
    assert busy_consumer != other.consumer

    # SIGKILL the replica generating the next answer, mid-generation
    rec.events.clear()
    ack = await rec.client.post("Tell me a long story about a lighthouse.")
    generating = (await first_delta(rec))["worker"]
    victim = w1 if generating == w1.consumer else w2
    survivor = w2 if victim is w1 else w1
    victim.kill()
    await rec.client.wait_for(lambda es: bool(outcomes(es, ack["cursor"])), timeout=120)
    await asyncio.sleep(3.0)
    done = outcomes(history(service), ack["cursor"])
    assert len(done) == 1
    assert done[0]["meta"]["worker"] == survivor.consumer
    assert survivor.metric("llmchat_jobs_total", how="reclaimed") >= 1
    await rec.client.close()


async def test_storm_of_500_messages_is_stored_in_order_and_coalesced(
    service: ChatService, worker_factory: Callable[..., ModelWorker]
) -> None:
    make_room(service.url, "lobby", "leader", ["ada"])
    # a short context keeps each turn quick on a loaded 2-core machine; the batch takes a whole
    # burst at once
    w = worker_factory(
        "ada", LLMCHAT_MAX_TOKENS="32", LLMCHAT_CONTEXT_TOKENS="256", LLMCHAT_BATCH="1000"
    )
    clients = [
        RoomClient([service.url], "lobby", f"user{i}", token=token(f"user{i}")) for i in range(5)
    ]
    for c in clients:
        await c.start()

    async def burst(c: RoomClient, n: int) -> list[str]:
        acks = await asyncio.gather(
            *(c.post(f"{c.name} storm {i}", msg_id=f"{c.name}-{i}") for i in range(n))
        )
        return [a["cursor"] for a in acks]

    t0 = asyncio.get_running_loop().time()
    await asyncio.gather(*(burst(c, 100) for c in clients))
    burst_s = asyncio.get_running_loop().time() - t0
    human = [e for e in history(service) if e["kind"] == "human"]
    assert len(human) == 500
    for c in clients:
        mine = [e["msg_id"] for e in human if e["author"] == c.name]
        assert mine == [f"{c.name}-{i}" for i in range(100)]  # each sender's order kept

    last_cut = human[-1]["id"]
    await clients[0].wait_for(lambda es: bool(outcomes(es, last_cut)), timeout=240)
    stored = history(service)
    answers = [e for e in stored if e["kind"] == "model"]
    turns = [e for e in stored if e["kind"] in ("model", "system") and "queue_s" in e["meta"]]
    generations = w.metric("llmchat_generations_total")
    # posted answers; the other generations were asked again (repeat) or reported (empty)
    posted = sum(w.metric("llmchat_generations_total", outcome=o) for o in ("ok", "cut"))
    max_queue = max(a["meta"]["queue_s"] for a in turns)
    print(
        f"\nstorm: burst {burst_s:.2f}s, generations {generations:.0f} for 500 messages, "
        f"answers {len(answers)}, max queue time {max_queue:.2f}s"
    )
    assert posted == len(answers)
    assert generations <= 50, "storm was not coalesced"
    assert max_queue < 60
    for c in clients:
        await c.close()
