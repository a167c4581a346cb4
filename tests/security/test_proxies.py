"""Whose address a request has (the outside test: 20 of 20 sign-ups with spoofed
X-Forwarded-For values got through `llmchat up`'s balancer, where 5 were allowed). Against real
chat-service processes wired as `llmchat up` wires them (``plan`` and its balancer), on
loopback: clients connect from 127.0.0.1 and 127.0.0.2 (both this host)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from llmchat_tools.local import up
from llmchat_tools.local.credentials import LocalCredentials

from tests.support.net import require_local
from tests.support.procs import ChatService, RedisServer, free_port
from tests.web.conftest import Balancer

StartService = Callable[..., ChatService]
LIMITS = {"LLMCHAT_SIGNUPS_PER_MINUTE": "1", "LLMCHAT_SIGNUP_BURST": "5"}


def _signups(url: str, prefix: str, n: int, source: str = "127.0.0.1", **hdrs: str) -> list[int]:
    """Status codes of ``n`` sign-ups from ``source``, each with its own spoofed header."""
    transport = httpx.HTTPTransport(local_address=require_local(source))
    with httpx.Client(base_url=url, transport=transport, timeout=10) as http:
        return [
            http.post(
                "/api/v1/auth/signup",
                json={"name": f"{prefix}{i}"},
                headers={k.replace("_", "-"): v.format(i=i) for k, v in hdrs.items()},
            ).status_code
            for i in range(n)
        ]


@pytest.fixture
def up_like(redis_server: RedisServer, tmp_path: Path) -> Iterator[Balancer]:
    """Two replicas and the balancer, as `llmchat up` plans them (proxy sockets included)."""
    require_local("127.0.0.1")
    socket_dir = Path("/tmp") / f"llmchat-test-{free_port()}"  # short: a Unix socket's path
    socket_dir.mkdir(mode=0o700)
    cfg = up.UpConfig(
        redis_url=redis_server.url, replicas=2, judge=False, models=[], socket_dir=socket_dir
    )
    creds = LocalCredentials.generate()
    specs = [s for s in up.plan(cfg, creds=creds) if s.role == "chat-service"]
    replicas = []
    for spec in specs:
        svc = ChatService(
            redis_server.url,
            tmp_path / "logs",
            name=spec.name,
            port=free_port(),  # plan's ports are fixed (8101, ...): any free one will do here
            env={**LIMITS, "LLMCHAT_PROXY_SOCKET": spec.env["LLMCHAT_PROXY_SOCKET"]},
        )
        svc.start()
        replicas.append(svc)
    lb = Balancer(up.balancer_backends(specs))
    lb.start()
    yield lb
    lb.stop()
    for svc in replicas:
        svc.stop()
    for path in socket_dir.iterdir():
        path.unlink()
    socket_dir.rmdir()


def test_the_balancer_passes_the_client_address_and_spoofed_headers_count_for_nothing(
    up_like: Balancer,
) -> None:
    spoofed = _signups(up_like.url, "spoof", 20, X_Forwarded_For="203.0.113.{i}")
    assert spoofed == [201] * 5 + [429] * 15, spoofed
    # another client (another loopback address) has a bucket of its own: the replica sees its
    # real address through the balancer, not the balancer's
    assert _signups(up_like.url, "other", 6, source="127.0.0.2") == [201] * 5 + [429]


def test_forwarded_headers_are_ignored_unless_the_proxy_is_trusted(
    chat_service_factory: StartService,
) -> None:
    require_local("127.0.0.1")
    plain = chat_service_factory("plain", **LIMITS)
    codes = _signups(
        plain.url, "p", 8, X_Forwarded_For="198.51.100.{i}", Forwarded="for=198.51.100.{i}"
    )
    assert codes == [201] * 5 + [429] * 3
    # an operator who puts the service behind a proxy names it: then its header is believed
    behind = chat_service_factory("behind", LLMCHAT_TRUSTED_PROXIES="127.0.0.1/32", **LIMITS)
    assert _signups(behind.url, "b", 8, X_Forwarded_For="198.51.100.{i}") == [201] * 8


def test_only_the_proxy_socket_takes_a_proxy_line(chat_service_factory: StartService) -> None:
    """A TCP client that starts with a PROXY line is not believed: it is not even HTTP."""
    require_local("127.0.0.1")
    svc = chat_service_factory("tcp", **LIMITS)
    with socket.create_connection(("127.0.0.1", svc.port), timeout=10) as s:
        s.sendall(
            b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n"
            b"POST /api/v1/auth/signup HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b'content-length: 15\r\n\r\n{"name":"pxy"}\r\n'
        )
        answer = s.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
