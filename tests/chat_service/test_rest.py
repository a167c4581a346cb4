"""REST API against a real chat-service process and a real redis-server."""

from __future__ import annotations

import httpx
import pytest
from openapi_spec_validator import validate

from tests.support.procs import ChatService


@pytest.fixture
def api(chat_service: ChatService) -> httpx.Client:
    return httpx.Client(base_url=chat_service.url + "/api/v1", timeout=10)


def make_room(api: httpx.Client, name: str = "lobby", **extra: object) -> dict[str, object]:
    r = api.post("/rooms", json={"name": name, **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_rooms_members_and_messages(api: httpx.Client) -> None:
    make_room(api, "lobby", title="The lobby", mode="all", models=[{"name": "smol"}])
    make_room(api, "other")
    assert [r["name"] for r in api.get("/rooms").json()["rooms"]] == ["lobby", "other"]
    assert api.get("/rooms/lobby").json()["mode"] == "all"

    assert api.post("/rooms/lobby/members", json={"name": "alice"}).status_code == 201
    assert api.post("/rooms/lobby/members", json={"name": "alice"}).status_code == 200
    assert [m["name"] for m in api.get("/rooms/lobby/members").json()["members"]] == ["alice"]

    ids = []
    for i in range(5):
        r = api.post("/rooms/lobby/messages", json={"author": "alice", "text": f"m{i}"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["entry"]["id"])
    assert ids == sorted(ids, key=lambda s: tuple(map(int, s.split("-"))))

    page = api.get("/rooms/lobby/messages", params={"after": "0-0", "limit": 2}).json()
    assert [e["text"] for e in page["entries"]] == ["m0", "m1"] and page["more"] is True
    page = api.get("/rooms/lobby/messages", params={"after": page["next_cursor"]}).json()
    assert [e["text"] for e in page["entries"]] == ["m2", "m3", "m4"] and page["more"] is False
    newest = api.get("/rooms/lobby/messages", params={"limit": 2}).json()
    assert [e["text"] for e in newest["entries"]] == ["m3", "m4"]


def test_same_message_id_is_stored_once(api: httpx.Client) -> None:
    make_room(api)
    api.post("/rooms/lobby/members", json={"name": "bob"})
    body = {"id": "client-42", "author": "bob", "text": "only once"}
    first = api.post("/rooms/lobby/messages", json=body)
    second = api.post("/rooms/lobby/messages", json=body)
    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["duplicate"] is True
    assert first.json()["entry"]["id"] == second.json()["entry"]["id"]
    entries = api.get("/rooms/lobby/messages", params={"after": "0-0"}).json()["entries"]
    assert [e["msg_id"] for e in entries] == ["client-42"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code", "words"),
    [
        ("post", "/rooms", {"name": "Bad Name!"}, 422, "invalid_request", "room name"),
        (
            "post",
            "/rooms",
            {"name": "ok", "models": [{"name": "a"}, {"name": "a"}]},
            422,
            "invalid_request",
            "duplicate model names",
        ),
        ("post", "/rooms", {"name": "lobby"}, 409, "room_exists", "already exists"),
        ("get", "/rooms/nowhere", None, 404, "room_not_found", "nowhere"),
        ("post", "/rooms/nowhere/members", {"name": "x"}, 404, "room_not_found", "nowhere"),
        ("post", "/rooms/lobby/members", {"name": ""}, 422, "invalid_request", "empty"),
        ("post", "/rooms/lobby/members", {}, 422, "invalid_request", "name"),
        ("post", "/rooms/lobby/members", {"name": "judge"}, 409, "name_taken", "reserved"),
        ("post", "/rooms/lobby/members", {"name": "smol"}, 409, "name_taken", "model"),
        ("post", "/rooms/lobby/members", {"name": "a b"}, 422, "invalid_request", "spaces"),
        (
            "post",
            "/rooms/lobby/messages",
            {"author": "carol", "text": "x" * 9000},
            413,
            "invalid_message",
            "8192",
        ),
        (
            "post",
            "/rooms/lobby/messages",
            {"author": "carol", "text": "   "},
            422,
            "invalid_message",
            "empty",
        ),
        (
            "post",
            "/rooms/lobby/messages",
            {"author": "mallory", "text": "hi"},
            403,
            "not_a_member",
            "mallory",
        ),
        (
            "post",
            "/rooms/lobby/messages",
            {"author": "carol", "text": "hi", "id": "bad id!"},
            422,
            "invalid_request",
            "message id",
        ),
        (
            "post",
            "/rooms/nowhere/messages",
            {"author": "carol", "text": "hi"},
            404,
            "room_not_found",
            "nowhere",
        ),
        ("get", "/rooms/lobby/messages?after=yesterday", None, 400, "invalid_cursor", "yesterday"),
    ],
)
def test_bad_input_is_named_and_changes_nothing(
    api: httpx.Client, method: str, path: str, body: object, status: int, code: str, words: str
) -> None:
    make_room(api, "lobby", models=[{"name": "smol"}])
    api.post("/rooms/lobby/members", json={"name": "carol"})
    api.post("/rooms/lobby/messages", json={"id": "keep", "author": "carol", "text": "kept"})
    before = api.get("/rooms/lobby/messages", params={"after": "0-0"}).json()["entries"]

    r = api.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert words in r.json()["error"]["message"]

    after = api.get("/rooms/lobby/messages", params={"after": "0-0"}).json()["entries"]
    assert after == before
    assert [m["name"] for m in api.get("/rooms/lobby/members").json()["members"]] == ["carol"]


def test_non_json_and_oversized_bodies(api: httpx.Client) -> None:
    make_room(api)
    r = api.post("/rooms", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    huge = b'{"name": "' + b"x" * 200_000 + b'"}'
    r = api.post("/rooms", content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    assert [r["name"] for r in api.get("/rooms").json()["rooms"]] == ["lobby"]


def test_openapi_document_is_valid_and_complete(chat_service: ChatService) -> None:
    doc = httpx.get(chat_service.url + "/openapi.json").json()
    validate(doc)
    paths = set(doc["paths"])
    assert {
        "/api/v1/rooms",
        "/api/v1/rooms/{room}",
        "/api/v1/rooms/{room}/members",
        "/api/v1/rooms/{room}/messages",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= paths
    post = doc["paths"]["/api/v1/rooms/{room}/messages"]["post"]
    assert {"201", "200", "403", "404", "413", "422", "503"} <= set(post["responses"])


def test_health_and_metrics(chat_service: ChatService) -> None:
    assert httpx.get(chat_service.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(chat_service.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["redis"] == "ok"
    text = httpx.get(chat_service.url + "/metrics").text
    for metric in (
        "llmchat_message_latency_seconds_bucket",
        "llmchat_websocket_connections",
        "llmchat_redis_up 1.0",
    ):
        assert metric in text
