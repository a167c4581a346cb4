"""HTTP-level limits of a real chat-service process: bodies, the docs page, and (below) what a
slow or greedy client can hold. Loopback only."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator

import httpx
from chat_service.settings import ChatServiceSettings

from tests.security.test_memory import memory_kib
from tests.support.api import join, make_room
from tests.support.auth import TOKEN_SECRET, admin_headers, headers
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


def _open(port: int, n: int) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setblocking(False)
        out.append(s)
    return out


def _closed_by_peer(s: socket.socket) -> bool:
    """True once the service has closed the socket (EOF or reset; what it said before is read)."""
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_silent_and_trickling_sockets_are_closed_after_the_header_timeout(
    chat_service_factory: StartService,
) -> None:
    """The outside test held 1,000 silent or trickling sockets for 60 s; none was closed."""
    require_local("127.0.0.1")
    svc = chat_service_factory("slow")  # the default header timeout (10 s)
    timeout = ChatServiceSettings(token_secret=TOKEN_SECRET).header_timeout_s
    silent = _open(svc.port, 200)
    trickling = _open(svc.port, 100)
    head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: " + b"a" * 1000
    started = time.monotonic()
    sent = 0
    open_socks = set(silent + trickling)
    try:
        while open_socks and time.monotonic() - started < timeout + 20:
            for s in trickling:  # one more byte each, never the end of the head
                if s in open_socks:
                    with contextlib.suppress(OSError):
                        s.send(head[sent % len(head) : sent % len(head) + 1])
            sent += 1
            # meanwhile an ordinary request is answered at once
            assert httpx.get(svc.url + "/healthz", timeout=5).status_code == 200
            open_socks = {s for s in open_socks if not _closed_by_peer(s)}
            time.sleep(0.5)
        seconds = time.monotonic() - started
        assert not open_socks, (
            f"{len(open_socks)} of 300 slow sockets still open after {seconds:.0f} s"
        )
        assert seconds >= timeout - 1  # not cut early: the timeout is what closed them
    finally:
        for s in silent + trickling:
            s.close()


def test_a_huge_header_is_refused_and_unfinished_ones_hold_no_memory(
    chat_service_factory: StartService,
) -> None:
    """The outside test: an 8 MB header was answered 200, and 6 never-finished ones held 42 MiB."""
    require_local("127.0.0.1")
    svc = chat_service_factory("headers")
    assert svc.proc is not None
    before = memory_kib(svc.proc.pid)
    big = b"x" * (8 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as s:
        answer = b""
        with contextlib.suppress(OSError):
            s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + big + b"\r\n\r\n")
        with contextlib.suppress(OSError):
            answer = s.recv(4096)
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:100]
    assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")) or answer == b"", answer[:100]
    unfinished = _open(svc.port, 6)
    try:
        for s in unfinished:
            s.setblocking(True)
            s.settimeout(5)
            with contextlib.suppress(OSError):
                s.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + big)  # never ends
        grown = memory_kib(svc.proc.pid) - before
        assert grown < 16 * 1024, f"the replica grew by {grown / 1024:.1f} MiB"
        assert httpx.get(svc.url + "/healthz", timeout=5).status_code == 200
    finally:
        for s in unfinished:
            s.close()


def test_connections_over_the_limit_get_503_websockets_included(
    chat_service_factory: StartService,
) -> None:
    require_local("127.0.0.1")
    svc = chat_service_factory("busy", LLMCHAT_MAX_CONNECTIONS="40")
    make_room(svc.url, "lobby", "all", [])
    held = _open(svc.port, 40)
    try:
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as extra:
            extra.settimeout(10)
            answer = extra.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"too_many_connections" in answer
        upgrade = (
            b"GET /api/v1/rooms/lobby/ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n"
            b"connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"sec-websocket-version: 13\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as ws:
            ws.settimeout(10)
            with contextlib.suppress(OSError):
                ws.sendall(upgrade)
            assert ws.recv(4096).startswith(b"HTTP/1.1 503")
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 10
    while True:  # the held ones gone, the service takes connections again
        try:
            if httpx.get(svc.url + "/healthz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.2)
