"""HTTP-level limits of a real chat-service process: bodies, the docs page, and (below) what a
slow or greedy client can hold. Loopback only."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx

from tests.support.api import join, make_room
from tests.support.auth import admin_headers, headers
from tests.support.net import require_local
from tests.support.procs import ChatService

StartService = Callable[..., ChatService]


def _chunks(total: int, size: int = 4096) -> Iterator[bytes]:
    """A JSON message body of ``total`` bytes, sent without a Content-Length (chunked)."""
    head, tail = b'{"text": "', b'"}'
    left = total - len(head) - len(tail)
    yield head
    while left > 0:
        n = min(size, left)
        yield b"x" * n
        left -= n
    yield tail


def test_a_chunked_body_over_the_limit_gets_413(chat_service: ChatService) -> None:
    require_local("127.0.0.1")
    make_room(chat_service.url, "lobby", "all", [])
    join(chat_service.url, "lobby", "alice")
    url = f"{chat_service.url}/api/v1/rooms/lobby/messages"
    with httpx.Client(timeout=30) as client:
        big = client.post(url, content=_chunks(2_000_000), headers=headers("alice"))
        assert big.status_code == 413, big.text
        assert big.json()["error"]["code"] == "body_too_large"
        assert "limit" in big.json()["error"]["message"]
        # the same way, within the limit: an ordinary post
        small = client.post(
            url,
            content=_chunks(200),
            headers={**headers("alice"), "content-type": "application/json"},
        )
        assert small.status_code == 201, small.text
        # with a Content-Length over the limit: refused before it is read
        sized = client.post(url, content=b"{" + b" " * 2_000_000 + b"}", headers=headers("alice"))
        assert sized.status_code == 413
    entries = httpx.get(url, params={"after": "0-0"}, headers=admin_headers()).json()["entries"]
    assert len(entries) == 1


def test_the_api_docs_are_off_by_default_and_under_a_policy_when_on(
    chat_service_factory: StartService,
) -> None:
    require_local("127.0.0.1")
    plain = chat_service_factory("plain")
    assert httpx.get(plain.url + "/docs").status_code == 404
    assert httpx.get(plain.url + "/redoc").status_code == 404
    assert httpx.get(plain.url + "/openapi.json").status_code == 200
    docs = chat_service_factory("docs", LLMCHAT_API_DOCS="true")
    page = httpx.get(docs.url + "/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert "'sha256-" in policy  # its one inline script, by hash
    assert page.headers["x-frame-options"] == "DENY"
    assert httpx.get(docs.url + "/redoc").status_code == 404
