"""Signing in from the page: sign-up and the stored token, refresh before expiry, expired and
invalid tokens, hidden rooms, rate limits. Real chromium against two real replicas."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from llmchat.auth import TokenSigner
from tests.support.api import all_entries, make_room
from tests.support.auth import TOKEN_SECRET, admin_headers, issued
from tests.web.conftest import Stack, join, open_page


def _me(url: str, token: str) -> dict[str, Any]:
    r = httpx.get(url + "/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def _stored_token(page: Any) -> str | None:
    token: str | None = page.evaluate("localStorage.getItem('llmchat.token')")
    return token


def _store_sign_in(page: Any, url: str, name: str, token: str) -> None:
    """Put a sign-in in the page's storage, as an earlier visit would have, and reload."""
    page.evaluate(
        "([n, t]) => { localStorage.setItem('llmchat.name', n);"
        " localStorage.setItem('llmchat.token', t); }",
        [name, token],
    )
    open_page(page, url)


def _join_error(page: Any, text: str) -> str:
    page.wait_for_function(
        "(t) => document.getElementById('join-error').textContent.includes(t)", arg=text
    )
    return str(page.text_content("#join-error"))


def test_sign_up_then_the_stored_token_and_never_a_token_in_a_url(
    stack_factory: Callable[..., Stack], page: Any, browser: Any
) -> None:
    stack = stack_factory()
    requests: list[tuple[str, str | None]] = []
    page.on("request", lambda r: requests.append((r.url, r.headers.get("authorization"))))
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    join(page, stack.url, "alice")
    token = _stored_token(page)
    assert token and page.evaluate("localStorage.getItem('llmchat.name')") == "alice"
    assert _me(stack.url, token)["user"] == "alice"

    api = [(u, auth) for u, auth in requests if "/api/v1/" in u]
    assert [u for u, auth in api if auth is None] == [stack.url + "/api/v1/auth/signup"]
    assert all(auth == f"Bearer {token}" for u, auth in api if not u.endswith("/signup")), api
    assert {u.split("?")[0].removeprefix(stack.url) for u, _ in api} >= {
        "/api/v1/auth/signup",
        "/api/v1/rooms",
        "/api/v1/rooms/lobby/members",
        "/api/v1/rooms/lobby/leader",
    }
    assert sockets == [stack.url.replace("http", "ws") + "/api/v1/rooms/lobby/ws"]
    assert not [u for u, _ in requests if token in u]

    # a reload rejoins with the same token (no second sign-up)
    page.reload()
    page.wait_for_selector("body[data-connected='true']", state="attached")
    assert _stored_token(page) == token
    assert sum(u.endswith("/auth/signup") for u, _ in requests) == 1
    assert not [u for u in sockets if token in u or "name=" in u]

    # another browser cannot take the name
    other_context = browser.new_context()
    try:
        other = other_context.new_page()
        open_page(other, stack.url)
        other.fill("#join-name", "alice")
        other.click("#join-button")
        assert _join_error(other, "taken") == "The name “alice” is taken; pick another."
        assert other.is_hidden("#room-view")
        assert other.evaluate("localStorage.getItem('llmchat.token')") is None
    finally:
        other_context.close()


def test_an_expired_token_signs_up_again_only_if_the_name_is_free(
    stack_factory: Callable[..., Stack], page: Any
) -> None:
    stack = stack_factory()
    expired = TokenSigner(TOKEN_SECRET, 60)
    open_page(page, stack.url)
    # dora's name was never registered: the page quietly takes it again
    _store_sign_in(page, stack.url, "dora", expired.issue("dora", now=time.time() - 3600).token)
    assert page.is_hidden("#signed-in")
    assert page.input_value("#join-name") == "dora"
    page.click("#join-button")
    page.wait_for_selector("body[data-connected='true']", state="attached")
    token = _stored_token(page)
    assert token and _me(stack.url, token)["user"] == "dora"

    # erin's name is registered (someone signed up): the page says why it cannot sign in
    page.click("#leave")
    signup = httpx.post(stack.url + "/api/v1/auth/signup", json={"name": "erin"})
    assert signup.status_code == 201, signup.text
    _store_sign_in(page, stack.url, "erin", expired.issue("erin", now=time.time() - 3600).token)
    page.click("#join-button")
    message = _join_error(page, "taken")
    assert "sign-in as “erin” has expired" in message
    assert message.endswith("The name “erin” is taken; pick another.")
    assert page.is_visible("#join-view")


def test_the_token_is_refreshed_before_it_expires(
    stack_factory: Callable[..., Stack], page: Any
) -> None:
    stack = stack_factory()
    short = issued("frank", ttl_seconds=6)
    open_page(page, stack.url)
    _store_sign_in(page, stack.url, "frank", short.token)
    assert page.text_content("#signed-in") == "Signed in as frank."
    page.click("#join-button")
    page.wait_for_selector("body[data-connected='true']", state="attached")
    # at half its life the page trades it for a fresh one
    page.wait_for_function(
        "(old) => localStorage.getItem('llmchat.token') !== old", arg=short.token, timeout=10_000
    )
    fresh = _stored_token(page)
    assert fresh
    me = _me(stack.url, fresh)
    assert me["user"] == "frank" and me["expires_at"] > short.expires_at + 60
    # once the first token has expired, reconnecting and posting still work
    time.sleep(max(0.0, short.expires_at + 1 - time.time()))
    page.evaluate("window.llmchat.ws.close()")
    page.wait_for_function("() => window.llmchat.reconnects.length === 1")
    page.fill("#composer-text", "still here")
    page.keyboard.press("Enter")
    page.wait_for_selector("#timeline > li.kind-human.mine")
    assert [e["text"] for e in all_entries(stack.url)] == ["still here"]


def test_a_token_that_stops_working_sends_the_page_back_to_the_join_screen(
    stack_factory: Callable[..., Stack], page: Any
) -> None:
    stack = stack_factory()
    short = issued("gina", ttl_seconds=4)
    open_page(page, stack.url)
    _store_sign_in(page, stack.url, "gina", short.token)
    # the page cannot refresh it (nor poll standings): the WebSocket is what finds out
    for path in ("auth/refresh", "rooms/lobby/leader", "rooms/lobby/ratings"):
        page.route(f"{stack.url}/api/v1/{path}", lambda route: route.abort())
    page.click("#join-button")
    page.wait_for_selector("body[data-connected='true']", state="attached")
    # at the expiry the service closes the socket itself (4401 token_expired)
    message = _join_error(page, "no longer valid")
    assert "expired" in message and message.endswith("Join again to sign in.")
    assert page.is_visible("#join-view") and page.is_hidden("#room-view")
    assert _stored_token(page) is None
    # the admin deletes gina: the name is free, joining again signs her up afresh, and the old
    # token (were it still valid) would not name the new gina
    r = httpx.delete(stack.url + "/api/v1/users/gina", headers=admin_headers())
    assert r.status_code == 204, r.text
    page.unroute_all()
    page.click("#join-button")
    page.wait_for_selector("body[data-connected='true']", state="attached")
    token = _stored_token(page)
    assert token and token != short.token


def test_hidden_rooms_are_explained_and_invited_rooms_listed(
    stack_factory: Callable[..., Stack], page: Any
) -> None:
    stack = stack_factory()
    make_room(stack.url, "secret", "all", ["smol"], visibility="invite")
    open_page(page, stack.url, "/?room=secret")
    page.fill("#join-name", "hana")
    page.click("#join-button")
    message = _join_error(page, "secret")
    assert message.startswith("There is no room “secret” you can join")
    options = page.eval_on_selector_all("#join-room option", "els => els.map(e => e.value)")
    assert options == ["lobby"]  # the invitation-only room is not even listed
    page.click("#join-button")  # the picker now shows: Join takes the picked room
    page.wait_for_selector("body[data-connected='true']", state="attached")
    page.wait_for_function(
        "() => document.getElementById('room-title').textContent === 'lobby — Test room'"
    )

    # once invited, the room is listed and can be joined
    invite = stack.url + "/api/v1/rooms/secret/invitations"
    r = httpx.post(invite, json={"name": "hana"}, headers=admin_headers())
    assert r.status_code == 201, r.text
    members = stack.url + "/api/v1/rooms/lobby/members"

    def in_lobby() -> bool:
        listed = httpx.get(members, headers=admin_headers()).json()["members"]
        return "hana" in [m["name"] for m in listed]

    assert in_lobby()
    page.click("#leave")  # leaves the room: no longer among its members
    deadline = time.monotonic() + 10
    while in_lobby():
        assert time.monotonic() < deadline, "leaving the room kept hana among its members"
        time.sleep(0.1)
    open_page(page, stack.url, "/?room=secret")
    page.wait_for_selector("#join-room option[value='secret']", state="attached")
    page.click("#join-button")
    page.wait_for_selector("body[data-connected='true']", state="attached")
    page.wait_for_function("() => document.getElementById('room-title').textContent === 'secret'")


def test_rate_limits_are_explained_and_refused_posts_are_sent_again(
    stack_factory: Callable[..., Stack], page: Any, browser: Any
) -> None:
    stack = stack_factory(
        LLMCHAT_USER_MESSAGES_PER_MINUTE="30",  # one message every 2 s ...
        LLMCHAT_USER_BURST="1",  # ... and no burst
        LLMCHAT_SIGNUPS_PER_MINUTE="1",
        LLMCHAT_SIGNUP_BURST="1",
    )
    join(page, stack.url, "ivan")
    texts = ["one", "two", "three"]
    for text in texts:
        page.fill("#composer-text", text)
        page.keyboard.press("Enter")
    toast = page.wait_for_selector(".toast.warn")
    assert "Slow down" in toast.text_content() and "Retrying in 2 s" in toast.text_content()
    page.wait_for_function(
        "() => document.querySelectorAll('#timeline > li.kind-human').length === 3"
        " && document.querySelectorAll('#pending > li').length === 0",
        timeout=20_000,
    )
    stored = [e["text"] for e in all_entries(stack.url)]
    assert sorted(stored) == sorted(texts), stored  # each once, none lost
    assert page.locator("#pending .failed").count() == 0

    # a sign-up over the limit: the form says when to retry
    other_context = browser.new_context()
    try:
        other = other_context.new_page()
        open_page(other, stack.url)
        other.fill("#join-name", "judy")
        other.click("#join-button")
        message = _join_error(other, "Slow down")
        assert message.startswith("Slow down: too many requests. Retry in ")
    finally:
        other_context.close()
