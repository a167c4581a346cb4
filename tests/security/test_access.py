"""Who may read and write a room, against a real chat-service and redis-server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.support.auth import ADMIN_TOKEN, TOKEN_SECRET, admin_headers, headers
from tests.support.procs import ROOT, ChatService


def api(svc: ChatService) -> httpx.Client:
    return httpx.Client(base_url=svc.url + "/api/v1", timeout=10)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_sign_up_refresh_and_who_am_i(chat_service: ChatService) -> None:
    with api(chat_service) as c:
        r = c.post("/auth/signup", json={"name": "Zoë"})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        assert r.json()["user"] == "Zoë"
        me = c.get("/auth/me", headers=_auth(token)).json()
        assert me == {"user": "Zoë", "admin": False, "expires_at": r.json()["expires_at"]}
        # the name is now hers, whatever the case
        for name in ("Zoë", "ZOË", "zoë"):
            taken = c.post("/auth/signup", json={"name": name})
            assert taken.status_code == 409 and taken.json()["error"]["code"] == "name_taken"
        for reserved in ("judge", "System"):
            refused = c.post("/auth/signup", json={"name": reserved})
            assert refused.status_code == 409 and "reserved" in refused.text
        fresh = c.post("/auth/refresh", headers=_auth(token))
        assert fresh.status_code == 200 and fresh.json()["user"] == "Zoë"
        assert fresh.json()["token"] != token
        assert c.get("/auth/me", headers=_auth(fresh.json()["token"])).json()["user"] == "Zoë"
        # the admin credential is not a user
        assert c.post("/auth/refresh", headers=admin_headers()).status_code == 403
        assert c.get("/auth/me", headers=admin_headers()).json()["admin"] is True


def test_admin_issues_tokens_and_only_the_admin(chat_service: ChatService) -> None:
    with api(chat_service) as c:
        r = c.post(
            "/auth/tokens", json={"name": "bot-1", "ttl_seconds": 120}, headers=admin_headers()
        )
        assert r.status_code == 201, r.text
        assert 100 < r.json()["expires_at"] - time.time() <= 121
        assert c.get("/auth/me", headers=_auth(r.json()["token"])).json()["user"] == "bot-1"
        # a registered name cannot be taken by sign-up
        assert c.post("/auth/signup", json={"name": "bot-1"}).status_code == 409
        denied = c.post("/auth/tokens", json={"name": "mallory"}, headers=headers("eve"))
        assert denied.status_code == 403 and denied.json()["error"]["code"] == "admin_required"
        assert c.post("/auth/tokens", json={"name": "mallory"}).status_code == 401


def test_invitation_only_rooms(chat_service: ChatService) -> None:
    with api(chat_service) as c:
        for room, vis in (("open", "public"), ("secret", "invite")):
            body = {"name": room, "visibility": vis}
            assert c.post("/rooms", json=body, headers=admin_headers()).status_code == 201
        for name in ("alice", "bob", "eve"):
            c.post("/auth/tokens", json={"name": name}, headers=admin_headers())
        # eve does not learn that the secret room exists: same answer as a room that does not
        listed = [r["name"] for r in c.get("/rooms", headers=headers("eve")).json()["rooms"]]
        assert listed == ["open"]
        for path in ("/rooms/secret", "/rooms/secret/messages", "/rooms/secret/members"):
            r = c.get(path, headers=headers("eve"))
            assert r.status_code == 404, (path, r.text)
            missing = c.get(path.replace("secret", "nosuch"), headers=headers("eve"))
            assert r.json()["error"] == {
                **missing.json()["error"],
                "message": missing.json()["error"]["message"].replace("nosuch", "secret"),
            }
        assert c.post("/rooms/secret/members", headers=headers("eve")).status_code == 404
        # the admin lets alice in; alice invites bob; eve still cannot join or read
        assert (
            c.post("/rooms/secret/members", json={"name": "alice"}, headers=admin_headers())
        ).status_code == 201
        r = c.post("/rooms/secret/invitations", json={"name": "bob"}, headers=headers("alice"))
        assert r.status_code == 201 and r.json()["created"] is True
        r = c.post("/rooms/secret/invitations", json={"name": "nobody"}, headers=headers("alice"))
        assert r.status_code == 404 and r.json()["error"]["code"] == "user_not_found"
        # bob, invited, sees it but must join before reading
        assert "secret" in [
            r["name"] for r in c.get("/rooms", headers=headers("bob")).json()["rooms"]
        ]
        r = c.get("/rooms/secret/messages", headers=headers("bob"))
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_a_member"
        assert c.post("/rooms/secret/members", headers=headers("bob")).status_code == 201
        post = c.post("/rooms/secret/messages", json={"text": "hi bob"}, headers=headers("alice"))
        assert post.status_code == 201
        texts = [
            e["text"]
            for e in c.get("/rooms/secret/messages", headers=headers("bob")).json()["entries"]
        ]
        assert texts == ["hi bob"]
        # eve cannot invite herself, post, or be invited by a non-member
        r = c.post("/rooms/secret/invitations", json={"name": "eve"}, headers=headers("eve"))
        assert r.status_code == 404
        r = c.post("/rooms/secret/messages", json={"text": "x"}, headers=headers("eve"))
        assert r.status_code == 404
        # in a public room anyone may join, but only members read
        r = c.get("/rooms/open/messages", headers=headers("eve"))
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_a_member"
        assert c.post("/rooms/open/members", headers=headers("eve")).status_code == 201
        assert c.get("/rooms/open/messages", headers=headers("eve")).status_code == 200
        # nothing eve tried reached the secret room's timeline
        entries = c.get("/rooms/secret/messages", headers=admin_headers()).json()["entries"]
        assert [e["author"] for e in entries] == ["alice"]


async def _ws_close(
    url: str, token: str | None, subprotocols: list[str] | None = None
) -> tuple[int, dict[str, Any]]:
    extra = {"Authorization": f"Bearer {token}"} if token and not subprotocols else {}
    offered = [Subprotocol(p) for p in subprotocols] if subprotocols else None
    async with websockets.connect(url, additional_headers=extra, subprotocols=offered) as ws:
        first = json.loads(await ws.recv())
        if first["type"] == "welcome":
            return 0, first
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
        assert info.value.rcvd is not None
        return info.value.rcvd.code, first


async def test_websocket_access(chat_service: ChatService) -> None:
    with api(chat_service) as c:
        c.post("/rooms", json={"name": "secret", "visibility": "invite"}, headers=admin_headers())
        c.post("/rooms/secret/members", json={"name": "alice"}, headers=admin_headers())
        c.post("/auth/tokens", json={"name": "bob"}, headers=admin_headers())
    url = f"{chat_service.ws_url}/api/v1/rooms/secret/ws"
    from tests.support.auth import token

    code, frame = await _ws_close(url, token("eve"))
    assert (code, frame["code"]) == (4404, "room_not_found")
    code, frame = await _ws_close(url, None)
    assert (code, frame["code"]) == (4401, "unauthenticated")
    code, frame = await _ws_close(url, ADMIN_TOKEN)
    assert (code, frame["code"]) == (4403, "user_required")
    # a browser offers the token as a subprotocol and gets llmchat.v1 back
    offered = [Subprotocol("llmchat.v1"), Subprotocol(f"bearer.{token('alice')}")]
    async with websockets.connect(url, subprotocols=offered) as ws:
        assert ws.subprotocol == "llmchat.v1"
        assert json.loads(await ws.recv())["type"] == "welcome"
    code, frame = await _ws_close(url, token("bob"))
    assert (code, frame["code"]) == (4404, "room_not_found")  # not invited: hidden
    with httpx.Client(base_url=chat_service.url + "/api/v1") as c:
        c.post("/rooms/secret/invitations", json={"name": "bob"}, headers=headers("alice"))
    code, frame = await _ws_close(url, token("bob"))
    assert code == 0 and frame["member"]["name"] == "bob"  # connecting joined him


def test_admin_operations_are_off_without_an_admin_credential(chat_service_factory: object) -> None:
    assert callable(chat_service_factory)
    svc = chat_service_factory("no-admin", LLMCHAT_ADMIN_TOKEN="")
    with api(svc) as c:
        r = c.post("/rooms", json={"name": "x"}, headers=admin_headers())
        # the former admin credential is now just an invalid token
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
        r = c.post("/rooms", json={"name": "x"}, headers=headers("alice"))
        assert (
            r.status_code == 403
            and "LLMCHAT_ADMIN_TOKEN is not set" in r.json()["error"]["message"]
        )


def test_closed_sign_up(chat_service_factory: object) -> None:
    assert callable(chat_service_factory)
    svc = chat_service_factory("closed", LLMCHAT_OPEN_SIGNUP="false")
    with api(svc) as c:
        r = c.post("/auth/signup", json={"name": "newcomer"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "signup_closed"
        assert (
            c.post("/auth/tokens", json={"name": "newcomer"}, headers=admin_headers()).status_code
            == 201
        )


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"LLMCHAT_TOKEN_SECRET": ""}, "LLMCHAT_TOKEN_SECRET"),
        ({"LLMCHAT_TOKEN_SECRET": "short"}, "at least 32 characters"),
        ({"LLMCHAT_ADMIN_TOKEN": "tooshort"}, "at least 24 characters"),
        ({"LLMCHAT_USER_MESSAGES_PER_MINUTE": "-1"}, "LLMCHAT_USER_MESSAGES_PER_MINUTE"),
    ],
)
def test_bad_auth_settings_stop_start_up_with_a_reason(env: dict[str, str], words: str) -> None:
    import os

    from tests.support.auth import AUTH_ENV

    full = {**os.environ, **AUTH_ENV, "LLMCHAT_PORT": "1", **env}
    if env.get("LLMCHAT_TOKEN_SECRET") == "":
        full.pop("LLMCHAT_TOKEN_SECRET")
    out = subprocess.run(
        [sys.executable, "-m", "llmchat", "chat-service"],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0
    assert words in out.stdout + out.stderr
    assert TOKEN_SECRET not in out.stdout + out.stderr


def test_secrets_never_reach_logs_or_the_timeline(chat_service_factory: object) -> None:
    assert callable(chat_service_factory)
    svc = chat_service_factory("secret-logs", LLMCHAT_LOG_LEVEL="DEBUG")
    with api(svc) as c:
        signed = c.post("/auth/signup", json={"name": "carol"}).json()["token"]
        c.post("/rooms", json={"name": "lobby"}, headers=admin_headers())
        c.post("/rooms/lobby/members", headers=_auth(signed))
        c.post("/rooms/lobby/messages", json={"text": "hello"}, headers=_auth(signed))
        for bad in (signed + "x", ADMIN_TOKEN + "x", "Basic " + ADMIN_TOKEN):
            c.get("/rooms", headers={"Authorization": f"Bearer {bad}"})
        entries = c.get("/rooms/lobby/messages", headers=admin_headers()).json()["entries"]

    async def ws_tries() -> None:
        url = f"{svc.ws_url}/api/v1/rooms/lobby/ws"
        await _ws_close(url, signed + "x")
        await _ws_close(url, signed)
        await _ws_close(url, None, ["llmchat.v1", f"bearer.{signed}"])

    asyncio.run(ws_tries())
    svc.stop()
    log = svc.log_path.read_text(encoding="utf-8")
    assert "WebSocket /api/v1/rooms/lobby/ws" in log  # the log is really there
    for secret in (TOKEN_SECRET, ADMIN_TOKEN, signed, signed.split(".")[2]):
        assert secret not in log
        assert all(secret not in json.dumps(e) for e in entries)


def test_system_prompts_are_for_members_only(chat_service: ChatService) -> None:
    with api(chat_service) as c:
        body = {
            "name": "den",
            "models": [{"name": "sage", "system_prompt": "The password is swordfish."}],
        }
        assert c.post("/rooms", json=body, headers=admin_headers()).status_code == 201
        for name in ("alice", "eve"):
            c.post("/auth/tokens", json={"name": name}, headers=admin_headers())
        assert c.post("/rooms/den/members", headers=headers("alice")).status_code == 201

        def prompts(who: dict[str, str]) -> tuple[object, object]:
            listed = c.get("/rooms", headers=who).json()["rooms"]
            one = c.get("/rooms/den", headers=who).json()
            return listed[0]["models"][0]["system_prompt"], one["models"][0]["system_prompt"]

        assert prompts(headers("eve")) == (None, None)  # signed in, not a member
        assert prompts(headers("alice")) == ("The password is swordfish.",) * 2
        assert prompts(admin_headers()) == ("The password is swordfish.",) * 2
        assert "swordfish" not in c.get("/rooms", headers=headers("eve")).text


def test_leave_remove_and_withdraw_an_invitation(chat_service: ChatService) -> None:
    with api(chat_service) as c:
        body = {"name": "club", "visibility": "invite"}
        assert c.post("/rooms", json=body, headers=admin_headers()).status_code == 201
        for name in ("alice", "bob", "carol", "eve"):
            c.post("/auth/tokens", json={"name": name}, headers=admin_headers())
        c.post("/rooms/club/members", json={"name": "alice"}, headers=admin_headers())
        for name in ("bob", "carol"):
            r = c.post("/rooms/club/invitations", json={"name": name}, headers=headers("alice"))
            assert r.status_code == 201
        assert c.get("/rooms/club/invitations", headers=headers("alice")).json() == {
            "invited": ["bob", "carol"]
        }
        # alice withdraws carol's invitation: carol can no longer see or join the room
        assert (
            c.delete("/rooms/club/invitations/carol", headers=headers("alice")).status_code == 204
        )
        assert (
            c.delete("/rooms/club/invitations/carol", headers=headers("alice")).status_code == 404
        )
        assert c.post("/rooms/club/members", headers=headers("carol")).status_code == 404
        # bob joins, then leaves: gone from the members, still invited, so he can come back
        assert c.post("/rooms/club/members", headers=headers("bob")).status_code == 201
        assert c.delete("/rooms/club/members/bob", headers=headers("bob")).status_code == 204
        names = [
            m["name"]
            for m in c.get("/rooms/club/members", headers=headers("alice")).json()["members"]
        ]
        assert names == ["alice"]
        r = c.get("/rooms/club/messages", headers=headers("bob"))
        assert r.status_code == 403 and r.json()["error"]["code"] == "not_a_member"
        assert c.post("/rooms/club/members", headers=headers("bob")).status_code == 201
        # a member cannot remove another; eve (not in, not invited) does not even see the room
        r = c.delete("/rooms/club/members/alice", headers=headers("bob"))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        assert c.delete("/rooms/club/members/bob", headers=headers("eve")).status_code == 404
        assert c.delete("/rooms/club/invitations/bob", headers=headers("eve")).status_code == 404
        # the admin removes bob: out, and his invitation with him
        assert c.delete("/rooms/club/members/bob", headers=admin_headers()).status_code == 204
        assert c.post("/rooms/club/members", headers=headers("bob")).status_code == 404
        assert c.delete("/rooms/club/members/bob", headers=admin_headers()).status_code == 404
        # all of it is in the OpenAPI document
        paths = httpx.get(chat_service.url + "/openapi.json").json()["paths"]
        assert "delete" in paths["/api/v1/rooms/{room}/members/{name}"]
        assert "delete" in paths["/api/v1/rooms/{room}/invitations/{name}"]
