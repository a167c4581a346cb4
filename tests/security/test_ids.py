"""Message ids: what the system writes is in a namespace no client can take, and an id another
author used is a conflict (the outside test's finding "a member can suppress a model's answer").
Against a real chat-service, a real redis-server and, for the answer itself, a real model
worker with the local model."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
import websockets
from llmchat_tools.client import RoomClient

from tests.support.api import all_entries, join, make_room, post
from tests.support.auth import token
from tests.support.net import require_local
from tests.support.procs import ChatService, ModelWorker

CUT = "1700000000000-0"
SERVER_SHAPED = [
    f"lead/{CUT}",
    f"ans/smol/{CUT}",
    f"err/smol/{CUT}",
    f"verdict/{CUT}",
    f"notice/{CUT}",
]


def test_clients_cannot_send_ids_of_the_system_s_namespace(chat_service: ChatService) -> None:
    require_local("127.0.0.1")
    make_room(chat_service.url, "lobby", "all", ["smol"])
    join(chat_service.url, "lobby", "alice")
    for msg_id in SERVER_SHAPED:
        r = post(chat_service.url, "lobby", "alice", "hi", id=msg_id)
        assert r.status_code == 422, (msg_id, r.text)
        assert "invalid message id" in r.json()["error"]["message"]
    assert all_entries(chat_service.url) == []


async def test_a_websocket_post_with_a_system_id_is_refused(chat_service: ChatService) -> None:
    require_local("127.0.0.1")
    make_room(chat_service.url, "lobby", "all", ["smol"])
    async with websockets.connect(
        f"{chat_service.ws_url}/api/v1/rooms/lobby/ws",
        additional_headers={"Authorization": f"Bearer {token('alice')}"},
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        for msg_id in SERVER_SHAPED:
            await ws.send(json.dumps({"type": "post", "id": msg_id, "text": "hi"}))
            frame = json.loads(await ws.recv())
            assert frame["type"] == "error" and frame["code"] == "invalid_frame", frame
            assert frame["ref"] is None  # not an id: not echoed
    assert all_entries(chat_service.url) == []


def test_an_id_another_author_used_is_a_conflict(chat_service: ChatService) -> None:
    require_local("127.0.0.1")
    make_room(chat_service.url, "lobby", "all", [])
    for who in ("alice", "bob"):
        join(chat_service.url, "lobby", who)
    first = post(chat_service.url, "lobby", "alice", "alice's words", id="shared-1")
    assert first.status_code == 201
    taken = post(chat_service.url, "lobby", "bob", "bob's words", id="shared-1")
    assert taken.status_code == 409, taken.text
    assert taken.json()["error"]["code"] == "id_conflict"
    retry = post(chat_service.url, "lobby", "alice", "alice's words", id="shared-1")
    assert retry.status_code == 200 and retry.json()["duplicate"] is True
    assert [(e["author"], e["text"]) for e in all_entries(chat_service.url)] == [
        ("alice", "alice's words")
    ]


@pytest.mark.model
async def test_a_member_cannot_suppress_a_model_s_answer(
    service: ChatService, worker_factory: Callable[..., ModelWorker]
) -> None:
    """Bob posts, before the model answers Alice, every id its answer could have (the old
    ``ans.<model>.<cut>`` and the new ``ans/<model>/<cut>``): the answer still arrives. Bob's
    posts ask another model (no worker), so they do not join Alice's turn."""
    require_local("127.0.0.1")
    make_room(service.url, "lobby", "leader", ["smol", "other"])
    worker = worker_factory("smol", LLMCHAT_MAX_TOKENS="24")
    worker.wait_ready()
    join(service.url, "lobby", "bob")
    alice = RoomClient([service.url], "lobby", "alice", token=token("alice"))
    await alice.start()
    worker.pause()  # the answer cannot be written before Bob's posts
    try:
        ack = await alice.post("@smol name a colour")
        cut = ack["cursor"]
        spoofs = {
            f"ans.smol.{cut}": 201,  # an ordinary client id now: harmless
            f"lead.{cut}": 201,
            f"ans/smol/{cut}": 422,  # the system's namespace: refused
            f"lead/{cut}": 422,
        }
        for msg_id, status in spoofs.items():
            r = post(service.url, "lobby", "bob", "@other I answered for you", id=msg_id)
            assert r.status_code == status, (msg_id, r.text)
        worker.resume()

        def answered(entries: list[dict[str, object]]) -> bool:
            return any(e["author"] == "smol" and e["kind"] == "model" for e in entries)

        await alice.wait_for(answered, timeout=120)
    finally:
        worker.resume()
        await alice.close()
    answers = [e for e in all_entries(service.url) if e["author"] == "smol"]
    assert len(answers) == 1 and answers[0]["msg_id"] == f"ans/smol/{cut}"
    assert answers[0]["meta"]["cut"] == cut and answers[0]["text"].strip()


def test_posting_as_the_worker_answers_is_refused_in_the_openapi_document(
    chat_service: ChatService,
) -> None:
    """The published id pattern is the client's: no '/' (so schemathesis cannot find one)."""
    doc = httpx.get(chat_service.url + "/openapi.json", timeout=10).json()
    body = doc["components"]["schemas"]["PostMessage"]["properties"]["id"]
    assert "/" not in json.dumps(body)
