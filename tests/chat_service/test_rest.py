"""REST API against a real chat-service process and a real redis-server."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from llmchat.auth import TokenSigner
from tests.support.auth import TOKEN_SECRET, admin_headers, headers
from tests.support.procs import ChatService

ADMIN = admin_headers()


@pytest.fixture
def api(chat_service: ChatService) -> httpx.Client:
    """A client without credentials: every call says who is calling (``headers=``)."""
    return httpx.Client(base_url=chat_service.url + "/api/v1", timeout=10)


def make_room(api: httpx.Client, name: str = "lobby", **extra: object) -> dict[str, object]:
    r = api.post("/rooms", json={"name": name, **extra}, headers=ADMIN)
    assert r.status_code == 201, r.text
    return dict(r.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def caller(who: str) -> dict[str, str]:
    """The headers of a caller in the bad-input table: a user's name, or one of the specials."""
    if who == "admin":
        return ADMIN
    if who == "nobody":
        return {}
    if who == "garbage":
        return bearer("not-a-token")
    if who == "expired":
        return bearer(TokenSigner(TOKEN_SECRET, 60).issue("carol", now=time.time() - 7200).token)
    if who == "foreign":  # a well-formed token for carol, signed with some other key
        return bearer(TokenSigner("another-signing-key-" + "x" * 32, 3600).issue("carol").token)
    return headers(who)


def test_rooms_members_and_messages(api: httpx.Client) -> None:
    make_room(api, "lobby", title="The lobby", mode="all", models=[{"name": "smol"}])
    make_room(api, "other")
    alice = headers("alice")
    rooms = api.get("/rooms", headers=alice).json()["rooms"]
    assert [r["name"] for r in rooms] == ["lobby", "other"]
    assert api.get("/rooms/lobby", headers=alice).json()["mode"] == "all"

    assert api.post("/rooms/lobby/members", headers=alice).status_code == 201
    again = api.post("/rooms/lobby/members", json={"name": "alice"}, headers=alice)
    assert again.status_code == 200
    members = api.get("/rooms/lobby/members", headers=alice).json()["members"]
    assert [m["name"] for m in members] == ["alice"]

    ids = []
    for i in range(5):
        body = {"author": "alice", "text": f"m{i}"} if i % 2 else {"text": f"m{i}"}
        r = api.post("/rooms/lobby/messages", json=body, headers=alice)
        assert r.status_code == 201, r.text
        assert r.json()["entry"]["author"] == "alice"
        ids.append(r.json()["entry"]["id"])
    assert ids == sorted(ids, key=lambda s: tuple(map(int, s.split("-"))))

    def page(**params: str | int) -> Any:
        r = api.get("/rooms/lobby/messages", params=params, headers=alice)
        assert r.status_code == 200, r.text
        return r.json()

    first = page(after="0-0", limit=2)
    assert [e["text"] for e in first["entries"]] == ["m0", "m1"] and first["more"] is True
    rest = page(after=first["next_cursor"])
    assert [e["text"] for e in rest["entries"]] == ["m2", "m3", "m4"] and rest["more"] is False
    newest = page(limit=2)
    assert [e["text"] for e in newest["entries"]] == ["m3", "m4"]
    # The admin reads any room without joining it.
    whole = api.get("/rooms/lobby/messages", params={"after": "0-0"}, headers=ADMIN).json()
    assert [e["text"] for e in whole["entries"]] == [f"m{i}" for i in range(5)]


def test_same_message_id_is_stored_once(api: httpx.Client) -> None:
    make_room(api)
    bob = headers("bob")
    assert api.post("/rooms/lobby/members", headers=bob).status_code == 201
    body = {"id": "client-42", "author": "bob", "text": "only once"}
    first = api.post("/rooms/lobby/messages", json=body, headers=bob)
    second = api.post("/rooms/lobby/messages", json=body, headers=bob)
    assert first.status_code == 201 and second.status_code == 200
    assert second.json()["duplicate"] is True
    assert first.json()["entry"]["id"] == second.json()["entry"]["id"]
    entries = api.get("/rooms/lobby/messages", params={"after": "0-0"}, headers=bob).json()
    assert [e["msg_id"] for e in entries["entries"]] == ["client-42"]


@pytest.mark.parametrize(
    ("who", "method", "path", "body", "status", "code", "words"),
    [
        ("admin", "post", "/rooms", {"name": "Bad Name!"}, 422, "invalid_request", "room name"),
        (
            "admin",
            "post",
            "/rooms",
            {"name": "ok", "models": [{"name": "a"}, {"name": "a"}]},
            422,
            "invalid_request",
            "duplicate model names",
        ),
        ("admin", "post", "/rooms", {"name": "lobby"}, 409, "room_exists", "already exists"),
        ("carol", "get", "/rooms/nowhere", None, 404, "room_not_found", "nowhere"),
        ("dave", "post", "/rooms/nowhere/members", None, 404, "room_not_found", "nowhere"),
        ("dave", "post", "/rooms/lobby/members", {"name": ""}, 422, "invalid_request", "empty"),
        ("admin", "post", "/rooms/lobby/members", {}, 422, "invalid_request", "name"),
        ("admin", "post", "/rooms/lobby/members", None, 422, "invalid_request", "name"),
        ("admin", "post", "/rooms/lobby/members", {"name": "judge"}, 409, "name_taken", "reserved"),
        ("admin", "post", "/rooms/lobby/members", {"name": "smol"}, 409, "name_taken", "model"),
        (
            "admin",
            "post",
            "/rooms/lobby/members",
            {"name": "a b"},
            422,
            "invalid_request",
            "spaces",
        ),
        (
            "carol",
            "post",
            "/rooms/lobby/messages",
            {"author": "carol", "text": "x" * 9000},
            413,
            "invalid_message",
            "8192",
        ),
        (
            "carol",
            "post",
            "/rooms/lobby/messages",
            {"author": "carol", "text": "   "},
            422,
            "invalid_message",
            "empty",
        ),
        # A valid token of someone who has not joined: may neither post nor read.
        (
            "mallory",
            "post",
            "/rooms/lobby/messages",
            {"text": "hi"},
            403,
            "not_a_member",
            "mallory",
        ),
        ("mallory", "get", "/rooms/lobby/messages", None, 403, "not_a_member", "mallory"),
        ("mallory", "get", "/rooms/lobby/members", None, 403, "not_a_member", "mallory"),
        ("mallory", "get", "/rooms/lobby/leader", None, 403, "not_a_member", "mallory"),
        ("mallory", "get", "/rooms/lobby/ratings", None, 403, "not_a_member", "mallory"),
        (
            "carol",
            "post",
            "/rooms/lobby/messages",
            {"author": "carol", "text": "hi", "id": "bad id!"},
            422,
            "invalid_request",
            "message id",
        ),
        (
            "carol",
            "post",
            "/rooms/nowhere/messages",
            {"author": "carol", "text": "hi"},
            404,
            "room_not_found",
            "nowhere",
        ),
        (
            "carol",
            "get",
            "/rooms/lobby/messages?after=yesterday",
            None,
            400,
            "invalid_cursor",
            "yesterday",
        ),
        # Who is calling: no token, a token that is not one, expired, signed with another key.
        ("nobody", "get", "/rooms/lobby/messages", None, 401, "unauthenticated", "Bearer"),
        (
            "nobody",
            "post",
            "/rooms/lobby/messages",
            {"text": "hi"},
            401,
            "unauthenticated",
            "Bearer",
        ),
        ("nobody", "post", "/rooms", {"name": "new"}, 401, "unauthenticated", "Bearer"),
        ("nobody", "post", "/rooms/lobby/members", None, 401, "unauthenticated", "Bearer"),
        ("garbage", "get", "/rooms/lobby/messages", None, 401, "invalid_token", "not valid"),
        (
            "garbage",
            "post",
            "/rooms/lobby/messages",
            {"text": "hi"},
            401,
            "invalid_token",
            "not valid",
        ),
        ("expired", "get", "/rooms/lobby/messages", None, 401, "token_expired", "expired"),
        (
            "expired",
            "post",
            "/rooms/lobby/messages",
            {"text": "hi"},
            401,
            "token_expired",
            "expired",
        ),
        ("foreign", "get", "/rooms/lobby/messages", None, 401, "invalid_token", "not valid"),
        (
            "foreign",
            "post",
            "/rooms/lobby/messages",
            {"text": "hi"},
            401,
            "invalid_token",
            "not valid",
        ),
        # What the caller may do: rooms are the admin's; nobody speaks or joins for someone else.
        ("carol", "post", "/rooms", {"name": "mine"}, 403, "admin_required", "admin"),
        (
            "carol",
            "post",
            "/rooms/lobby/messages",
            {"author": "dave", "text": "hi"},
            403,
            "forbidden",
            "cannot post as 'dave'",
        ),
        (
            "mallory",
            "post",
            "/rooms/lobby/messages",
            {"author": "carol", "text": "hi"},
            403,
            "forbidden",
            "cannot post as 'carol'",
        ),
        (
            "dave",
            "post",
            "/rooms/lobby/members",
            {"name": "carol"},
            403,
            "forbidden",
            "cannot join as 'carol'",
        ),
        ("admin", "post", "/rooms/lobby/messages", {"text": "hi"}, 403, "user_required", "user"),
    ],
)
def test_bad_input_is_named_and_changes_nothing(
    api: httpx.Client,
    who: str,
    method: str,
    path: str,
    body: object,
    status: int,
    code: str,
    words: str,
) -> None:
    make_room(api, "lobby", models=[{"name": "smol"}])
    carol = headers("carol")
    assert api.post("/rooms/lobby/members", headers=carol).status_code == 201
    kept = {"id": "keep", "author": "carol", "text": "kept"}
    assert api.post("/rooms/lobby/messages", json=kept, headers=carol).status_code == 201
    before = api.get("/rooms/lobby/messages", params={"after": "0-0"}, headers=ADMIN).json()
    rooms_before = api.get("/rooms", headers=ADMIN).json()

    r = api.request(method, path, json=body, headers=caller(who))
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert words in r.json()["error"]["message"]
    if status == 401:
        assert r.headers["www-authenticate"] == "Bearer"

    after = api.get("/rooms/lobby/messages", params={"after": "0-0"}, headers=ADMIN).json()
    assert after["entries"] == before["entries"]
    members = api.get("/rooms/lobby/members", headers=ADMIN).json()["members"]
    assert [m["name"] for m in members] == ["carol"]
    assert api.get("/rooms", headers=ADMIN).json() == rooms_before


def test_non_json_and_oversized_bodies(api: httpx.Client) -> None:
    make_room(api)
    json_admin = {"content-type": "application/json", **ADMIN}
    r = api.post("/rooms", content=b"{not json", headers=json_admin)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    huge = b'{"name": "' + b"x" * 200_000 + b'"}'
    r = api.post("/rooms", content=huge, headers=json_admin)
    assert r.status_code == 413 and "limit" in r.json()["error"]["message"]
    assert [r["name"] for r in api.get("/rooms", headers=ADMIN).json()["rooms"]] == ["lobby"]


def test_openapi_document_is_valid_and_complete(chat_service: ChatService) -> None:
    doc = httpx.get(chat_service.url + "/openapi.json").json()
    validate(doc)
    paths = set(doc["paths"])
    assert {
        "/api/v1/auth/signup",
        "/api/v1/rooms",
        "/api/v1/rooms/{room}",
        "/api/v1/rooms/{room}/members",
        "/api/v1/rooms/{room}/messages",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= paths
    post = doc["paths"]["/api/v1/rooms/{room}/messages"]["post"]
    assert {"201", "200", "401", "403", "404", "413", "422", "503"} <= set(post["responses"])
    assert "401" in doc["paths"]["/api/v1/rooms/{room}/messages"]["get"]["responses"]


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
